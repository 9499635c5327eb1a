// Services page (/services): every service with its operations and links into trace search.
import { useEffect, useState } from 'preact/hooks';
import { listOperations, listServices, useApi, type Operation } from '../api';
import { Empty, ErrorBanner, Link, Loading, ServiceDot } from '../components/common';
import { redOf, serviceRed } from '../metrics/prom';
import { href, navigate, paramsToMap, timeParams, type Route } from '../url';

type OpsState = { ops?: Operation[]; error?: Error };

/** Loads the operations of each service, a few requests at a time. */
function useAllOperations(services: string[] | undefined): Record<string, OpsState> {
  const [state, setState] = useState<Record<string, OpsState>>({});
  useEffect(() => {
    if (!services) return;
    const ctl = new AbortController();
    setState({});
    const queue = [...services];
    const worker = async () => {
      for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
        const svc = name;
        try {
          const ops = await listOperations(svc, ctl.signal);
          if (!ctl.signal.aborted) setState((s) => ({ ...s, [svc]: { ops } }));
        } catch (error) {
          if (!ctl.signal.aborted) setState((s) => ({ ...s, [svc]: { error: error as Error } }));
        }
      }
    };
    for (let i = 0; i < 4; i++) void worker();
    return () => ctl.abort();
  }, [services]);
  return state;
}

export function ServicesPage(props: { route: Route }) {
  const { params } = props.route;
  const filter = params.get('q') ?? '';
  const services = useApi((s) => listServices(s), []);
  const ops = useAllOperations(services.data);
  const time = timeParams(params);
  const shown = (services.data ?? []).filter((s) => s.toLowerCase().includes(filter.toLowerCase()));
  const firstOpsError = Object.values(ops).find((o) => o.error)?.error;
  // Request rate, errors and latency where the services export HTTP server metrics.
  const red = useApi((s) => serviceRed(s), []);
  const hasRed = (red.data?.size ?? 0) > 0;

  return (
    <div class="page services-page">
      <div class="page-head">
        <h1>Services</h1>
        <input
          class="filter"
          type="search"
          placeholder="Filter services"
          value={filter}
          onInput={(e) =>
            navigate(href('/services', { ...paramsToMap(params), q: e.currentTarget.value }), { replace: true })
          }
        />
      </div>
      <ErrorBanner error={services.error} what="Loading services" />
      <ErrorBanner error={firstOpsError} what="Loading operations" />
      {services.loading && !services.data && <Loading what="services" />}
      {services.data && services.data.length === 0 && (
        <Empty>No services have sent traces yet. Point an OpenTelemetry SDK or collector at Loupe's OTLP endpoint.</Empty>
      )}
      {shown.length > 0 && (
        <table class="grid services-table">
          <thead>
            <tr>
              <th>Service</th>
              {hasRed && <th class="num" title="HTTP requests per second (last 5 minutes)">Req/s</th>}
              {hasRed && <th class="num" title="Share of HTTP responses with a 5xx status">Errors</th>}
              {hasRed && <th class="num" title="99th percentile of HTTP server request duration">p99</th>}
              <th class="num">Operations</th>
              <th>Operation names</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {shown.map((svc) => {
              const o = ops[svc];
              const r = redOf(red.data, svc);
              const job = 'http_server_request_duration_seconds';
              const chart = (q: string) => href('/metrics-explorer', { ...time, q });
              return (
                <tr key={svc}>
                  <td class="svc-cell">
                    <ServiceDot name={svc} /> <strong>{svc}</strong>
                  </td>
                  {hasRed && (
                    <td class="num" data-testid="svc-rate">
                      {r ? <Link href={chart(`sum by (job) (rate(${job}_count{job=~".*${svc}"}[5m]))`)}>{r.rate.toFixed(2)}</Link> : '–'}
                    </td>
                  )}
                  {hasRed && (
                    <td class={`num${r && r.errors > 0 ? ' text-err' : ''}`}>
                      {r && r.rate > 0 ? `${((100 * r.errors) / r.rate).toFixed(1)}%` : '–'}
                    </td>
                  )}
                  {hasRed && (
                    <td class="num">
                      {r?.p99 !== undefined ? (
                        <Link href={chart(`histogram_quantile(0.99, sum by (le) (rate(${job}_bucket{job=~".*${svc}"}[5m])))`)}>
                          {r.p99 >= 1 ? `${r.p99.toFixed(2)} s` : `${(r.p99 * 1000).toFixed(0)} ms`}
                        </Link>
                      ) : (
                        '–'
                      )}
                    </td>
                  )}
                  <td class="num">{o?.ops ? o.ops.length : o?.error ? '!' : '…'}</td>
                  <td>
                    {o?.error && <span class="text-err small">{o.error.message}</span>}
                    <div class="ops">
                      {(o?.ops ?? []).map((op) => (
                        <Link
                          key={op.name + op.spanKind}
                          class="op"
                          href={href('/traces', { ...time, service: svc, operation: op.name, limit: '20' })}
                          title={`Search ${svc} traces for ${op.name}`}
                        >
                          {op.spanKind && op.spanKind !== 'unspecified' && <span class="op-kind">{op.spanKind}</span>}
                          {op.name}
                        </Link>
                      ))}
                    </div>
                  </td>
                  <td class="actions">
                    <Link class="btn btn-xs" href={href('/traces', { ...time, service: svc, limit: '20' })}>
                      Search traces
                    </Link>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {services.data && services.data.length > 0 && shown.length === 0 && <Empty>No service matches “{filter}”.</Empty>}
    </div>
  );
}
