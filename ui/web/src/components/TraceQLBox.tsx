// TraceQL query box (beside the search form): one query, run with Enter or the button, kept
// in the URL as `q`. Errors from the server (400 with a message naming the problem) are shown
// under the box by the page's error banner.
import { useEffect, useState } from 'preact/hooks';

const EXAMPLES = [
  '{ status = error }',
  '{ resource.service.name = "checkout" && duration > 100ms }',
  '{ span.http.response.status_code >= 500 } | count() > 1',
  '{ kind = server } >> { status = error }',
];

export function TraceQLBox(props: { initial: string; onRun: (q: string) => void; busy: boolean }) {
  const [text, setText] = useState(props.initial);
  useEffect(() => setText(props.initial), [props.initial]);
  const run = (e: Event) => {
    e.preventDefault();
    props.onRun(text.trim());
  };
  return (
    <form class="traceql-box" onSubmit={run} data-testid="traceql-form">
      <label class="traceql-label" for="traceql-input">
        TraceQL
      </label>
      <input
        id="traceql-input"
        class="traceql-input mono"
        name="q"
        spellcheck={false}
        autoComplete="off"
        placeholder={EXAMPLES[1]}
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        data-testid="traceql-input"
        list="traceql-examples"
      />
      <datalist id="traceql-examples">
        {EXAMPLES.map((x) => (
          <option key={x} value={x} />
        ))}
      </datalist>
      <button type="submit" class="btn btn-primary" disabled={props.busy} data-testid="traceql-run">
        Run query
      </button>
      {props.initial && (
        <button type="button" class="btn" onClick={() => props.onRun('')} title="Back to the search form">
          Clear
        </button>
      )}
    </form>
  );
}
