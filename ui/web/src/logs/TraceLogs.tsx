// The trace view's Logs tab: every log line of the trace, across services, in time order;
// each shows its offset into the trace and links to its span.
import type { LogLine } from '../api';
import { Empty, ErrorBanner, Loading } from '../components/common';
import { formatDuration, nanos } from '../format';
import { LogTable } from './LogTable';
import { withCondition } from './query';
import { href, navigate } from '../url';
import type { Loaded } from '../api';

export function TraceLogs(props: {
  logs: Loaded<LogLine[]>;
  traceStart: bigint;
  spanIds: Set<string>;
  path: string;
  params: Record<string, string | string[]>;
  time: Record<string, string | undefined>;
}) {
  const { logs } = props;
  if (logs.loading && !logs.data) return <Loading what="log lines" />;
  if (logs.error) return <ErrorBanner error={logs.error} what="Loading the trace's logs" />;
  const lines = logs.data ?? [];
  if (!lines.length) return <Empty>No log line carries this trace's id.</Empty>;
  return (
    <div data-testid="trace-logs">
      <LogTable
        lines={lines}
        time={props.time}
        timeOf={(l) => `+${formatDuration(Number(nanos(l.timeUnixNano) - props.traceStart))}`}
        spanLink={(l) =>
          l.spanId && props.spanIds.has(l.spanId) ? href(props.path, { ...props.params, tab: undefined, span: l.spanId }) : null
        }
        onFilter={(cond) => navigate(href('/logs', { ...props.time, q: withCondition('', cond) }))}
      />
    </div>
  );
}
