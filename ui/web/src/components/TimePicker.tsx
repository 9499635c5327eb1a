// Time-range picker in the top bar: relative presets and a custom absolute from/to,
// written to the URL's `from` and `to` params (other params are kept).
import { useEffect, useRef, useState } from 'preact/hooks';
import {
  RELATIVE_RANGES,
  href,
  navigate,
  paramsToMap,
  parseTimeExpr,
  rangeLabel,
  resolveRange,
  timeRangeFrom,
  toLocalInput,
  type Route,
} from '../url';

export function TimePicker(props: { route: Route }) {
  const { route } = props;
  const range = timeRangeFrom(route.params);
  const [open, setOpen] = useState(false);
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [err, setErr] = useState('');
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!open) return;
    const { startMs, endMs } = resolveRange(range);
    setFrom(toLocalInput(startMs));
    setTo(toLocalInput(endMs));
    setErr('');
    const onDoc = (e: MouseEvent) => {
      if (box.current && !box.current.contains(e.target as Node)) setOpen(false);
    };
    const onKey = (e: KeyboardEvent) => e.key === 'Escape' && setOpen(false);
    document.addEventListener('mousedown', onDoc);
    document.addEventListener('keydown', onKey);
    return () => {
      document.removeEventListener('mousedown', onDoc);
      document.removeEventListener('keydown', onKey);
    };
  }, [open]);

  const apply = (f: string, t: string) => {
    const params = { ...paramsToMap(route.params), from: f, to: t };
    delete (params as Record<string, unknown>).span;
    navigate(href(route.path, params));
    setOpen(false);
  };

  const applyCustom = (e: Event) => {
    e.preventDefault();
    const f = parseTimeExpr(from);
    const t = parseTimeExpr(to);
    if (f === null || t === null) return setErr('Enter both times');
    if (f >= t) return setErr('"From" must be before "to"');
    apply(String(Math.round(f)), String(Math.round(t)));
  };

  return (
    <div class="timepicker" ref={box}>
      <button type="button" class="btn timepicker-btn" onClick={() => setOpen(!open)} aria-expanded={open}>
        <span class="clock" aria-hidden="true">◷</span> {rangeLabel(range)} <span class="caret">▾</span>
      </button>
      {open && (
        <div class="timepicker-pop" role="dialog" aria-label="Time range">
          <div class="timepicker-presets">
            {RELATIVE_RANGES.map((r) => (
              <button
                type="button"
                key={r.from}
                class={`preset${r.from === range.from && range.to === 'now' ? ' active' : ''}`}
                onClick={() => apply(r.from, 'now')}
              >
                {r.label}
              </button>
            ))}
          </div>
          <form class="timepicker-custom" onSubmit={applyCustom}>
            <div class="tp-title">Absolute range</div>
            <label>
              From
              <input type="datetime-local" step={1} value={from} onInput={(e) => setFrom(e.currentTarget.value)} />
            </label>
            <label>
              To
              <input type="datetime-local" step={1} value={to} onInput={(e) => setTo(e.currentTarget.value)} />
            </label>
            {err && <div class="field-error">{err}</div>}
            <button type="submit" class="btn btn-primary">
              Apply
            </button>
          </form>
        </div>
      )}
    </div>
  );
}
