// Services page (/services): every service with its operations and links into trace search.
import { useEffect, useState } from 'preact/hooks';
import { listOperations, listServices, useApi, type Operation } from '../api';
import { Empty, ErrorBanner, Link, Loading, ServiceDot } from '../components/common';
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
              <th class="num">Operations</th>
              <th>Operation names</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {shown.map((svc) => {
              const o = ops[svc];
              return (
                <tr key={svc}>
                  <td class="svc-cell">
                    <ServiceDot name={svc} /> <strong>{svc}</strong>
                  </td>
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
