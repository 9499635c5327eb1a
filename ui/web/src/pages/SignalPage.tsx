// Placeholder page for signals whose pipelines are not in Loupe yet (metrics): says so plainly.
import { Link } from '../components/common';

export function SignalPage(props: { signal: 'Metrics' }) {
  const lower = props.signal.toLowerCase();
  return (
    <div class="page">
      <h1>{props.signal}</h1>
      <div class="notice">
        <p>
          Loupe does not store {lower} yet. This page starts working when the {lower} pipeline lands: OTLP{' '}
          {lower} received by the collector, stored, and served by the query API.
        </p>
        <p>
          Until then there is nothing to show here, and this page shows no sample data. Traces and logs are
          available now: <Link href="/traces">search traces</Link>, <Link href="/logs">search logs</Link> or{' '}
          <Link href="/services">browse services</Link>.
        </p>
      </div>
    </div>
  );
}
