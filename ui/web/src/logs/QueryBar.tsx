// The log query bar: the native search syntax, with autocomplete. A bare word offers field
// names (service, severity, trace_id and the attribute keys of the lines on screen); a
// `field:` offers that field's most frequent values among the matching lines (the facets
// endpoint). Arrow keys move, Enter or Tab takes a suggestion, Escape closes the list.
import { useEffect, useRef, useState } from 'preact/hooks';
import { type LogQuery, logFacets } from '../api';
import { LEVELS } from './levels';
import { quoteValue, type Typing, typingAt } from './query';

interface Suggestion {
  text: string;
  hint?: string;
}

const BASE_FIELDS = ['service', 'severity', 'trace_id'];

export function QueryBar(props: {
  value: string;
  onSubmit: (q: string) => void;
  /** Attribute keys seen on screen, offered as fields. */
  fields: string[];
  /** The range to take values from. */
  range: { start: number; end: number };
}) {
  const [text, setText] = useState(props.value);
  const [cursor, setCursor] = useState(props.value.length);
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(0);
  const [values, setValues] = useState<{ field: string; list: Suggestion[] } | null>(null);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => setText(props.value), [props.value]);

  const typing: Typing = typingAt(text, cursor);
  const field = typing.field;
  // Values of the field being typed, among the lines the rest of the query matches.
  useEffect(() => {
    if (!open || !field) return;
    if (field === 'severity' || field === 'level') {
      setValues({ field, list: LEVELS.filter((l) => l !== 'unknown').map((l) => ({ text: l })) });
      return;
    }
    const ctl = new AbortController();
    const rest = (text.slice(0, typing.start) + text.slice(typing.end)).trim();
    const q: LogQuery = { query: rest, start: props.range.start, end: props.range.end };
    const timer = setTimeout(() => {
      logFacets(field, q, ctl.signal).then(
        (f) => setValues({ field, list: f.values.map((v) => ({ text: v.value, hint: String(v.count) })) }),
        () => setValues({ field, list: [] }),
      );
    }, 150);
    return () => {
      clearTimeout(timer);
      ctl.abort();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [open, field, props.range.start, props.range.end]);

  let suggestions: Suggestion[] = [];
  if (field) {
    const pre = typing.prefix.toLowerCase();
    suggestions = (values?.field === field ? values.list : []).filter((s) => s.text.toLowerCase().startsWith(pre));
  } else if (typing.prefix) {
    const pre = typing.prefix.toLowerCase();
    const names = [...BASE_FIELDS, ...props.fields.map((f) => `attributes.${f}`)];
    suggestions = names.filter((n) => n.toLowerCase().startsWith(pre) && n !== pre).map((n) => ({ text: `${n}:`, hint: 'field' }));
  }
  suggestions = suggestions.slice(0, 12);
  const showList = open && suggestions.length > 0;

  const take = (s: Suggestion) => {
    const neg = typing.negated ? '-' : '';
    const word = field ? `${neg}${field}:${quoteValue(s.text)} ` : `${neg}${s.text}`;
    const next = text.slice(0, typing.start) + word + text.slice(typing.end).replace(/^\s+/, '');
    const pos = typing.start + word.length;
    setText(next);
    setCursor(pos);
    setActive(0);
    requestAnimationFrame(() => input.current?.setSelectionRange(pos, pos));
  };

  const onKey = (e: KeyboardEvent) => {
    if (showList && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
      e.preventDefault();
      const n = suggestions.length;
      setActive((active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n);
    } else if (showList && (e.key === 'Tab' || (e.key === 'Enter' && active >= 0 && field !== null))) {
      e.preventDefault();
      take(suggestions[Math.min(active, suggestions.length - 1)]);
    } else if (e.key === 'Escape') {
      setOpen(false);
    } else if (e.key === 'Enter') {
      e.preventDefault();
      setOpen(false);
      props.onSubmit(text);
    }
  };

  return (
    <div class="query-bar">
      <input
        ref={input}
        class="mono"
        type="text"
        spellcheck={false}
        placeholder='Search lines: words, "phrases", service:web severity>=warn attributes.http.status_code:500 trace_id:… (OR, NOT, -, wildcards*)'
        value={text}
        onInput={(e) => {
          setText(e.currentTarget.value);
          setCursor(e.currentTarget.selectionStart ?? e.currentTarget.value.length);
          setOpen(true);
          setActive(0);
        }}
        onKeyDown={onKey}
        onKeyUp={(e) => setCursor(e.currentTarget.selectionStart ?? 0)}
        onClick={(e) => setCursor(e.currentTarget.selectionStart ?? 0)}
        onFocus={() => setOpen(true)}
        onBlur={() => setTimeout(() => setOpen(false), 150)}
        data-testid="log-query"
      />
      {showList && (
        <ul class="suggestions" data-testid="suggestions">
          {suggestions.map((s, i) => (
            <li
              key={s.text}
              class={i === active ? 'active' : ''}
              onMouseDown={(e) => {
                e.preventDefault();
                take(s);
              }}
            >
              <span class="mono">{s.text}</span>
              {s.hint && <span class="muted small">{s.hint}</span>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
