// Trace search form: service, operation (loaded for the chosen service), tags, status,
// min/max duration and limit. Submitting writes the filters to the URL.
import { useEffect, useState } from 'preact/hooks';
import { listOperations, listServices, useApi } from '../api';
import { ErrorBanner } from './common';
import { parseGoDuration } from '../url';

export interface SearchFilters {
  service: string;
  operation: string;
  tags: string[];
  status: string;
  minDuration: string;
  maxDuration: string;
  limit: string;
}

export const DEFAULT_LIMIT = '20';

export function filtersFromParams(p: URLSearchParams): SearchFilters {
  return {
    service: p.get('service') ?? '',
    operation: p.get('operation') ?? '',
    tags: p.getAll('tags').filter(Boolean),
    status: p.get('status') ?? '',
    minDuration: p.get('minDuration') ?? '',
    maxDuration: p.get('maxDuration') ?? '',
    limit: p.get('limit') ?? DEFAULT_LIMIT,
  };
}

/** Splits `k=v k2="v with spaces"` (space or newline separated) into ["k=v", "k2=v with spaces"]. */
export function parseTags(text: string): { tags: string[]; bad: string[] } {
  const tags: string[] = [];
  const bad: string[] = [];
  const re = /([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)|(\S+)/g;
  for (const m of text.matchAll(re)) {
    if (m[3] !== undefined) {
      bad.push(m[3]);
      continue;
    }
    let value = m[2];
    if (value.startsWith('"')) value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    tags.push(`${m[1]}=${value}`);
  }
  return { tags, bad };
}

export function formatTags(tags: string[]): string {
  return tags
    .map((t) => {
      const i = t.indexOf('=');
      const k = t.slice(0, i);
      const v = t.slice(i + 1);
      return /[\s"]/.test(v) ? `${k}="${v.replace(/(["\\])/g, '\\$1')}"` : t;
    })
    .join(' ');
}

export function SearchForm(props: { initial: SearchFilters; onSearch: (f: SearchFilters) => void; busy: boolean }) {
  const { initial } = props;
  const [service, setService] = useState(initial.service);
  const [operation, setOperation] = useState(initial.operation);
  const [tagText, setTagText] = useState(formatTags(initial.tags));
  const [status, setStatus] = useState(initial.status);
  const [minD, setMinD] = useState(initial.minDuration);
  const [maxD, setMaxD] = useState(initial.maxDuration);
  const [limit, setLimit] = useState(initial.limit);
  const [errors, setErrors] = useState<Record<string, string>>({});

  // Follow URL changes (back/forward, links) by resetting the form to the URL's filters.
  const initialKey = JSON.stringify(initial);
  useEffect(() => {
    setService(initial.service);
    setOperation(initial.operation);
    setTagText(formatTags(initial.tags));
    setStatus(initial.status);
    setMinD(initial.minDuration);
    setMaxD(initial.maxDuration);
    setLimit(initial.limit);
    setErrors({});
  }, [initialKey]);

  const services = useApi((s) => listServices(s), []);
  const ops = useApi((s) => listOperations(service, s), [service], !!service);

  const serviceNames = services.data ?? [];
  const serviceOptions = service && !serviceNames.includes(service) ? [service, ...serviceNames] : serviceNames;
  const opNames = (ops.data ?? []).map((o) => o.name);
  const opOptions = operation && !opNames.includes(operation) ? [operation, ...opNames] : opNames;

  const submit = (e: Event) => {
    e.preventDefault();
    const errs: Record<string, string> = {};
    const parsed = parseTags(tagText);
    if (parsed.bad.length) errs.tags = `Not key=value: ${parsed.bad.join(' ')}`;
    const min = minD.trim() ? parseGoDuration(minD) : 0;
    const max = maxD.trim() ? parseGoDuration(maxD) : 0;
    if (min === null) errs.minDuration = 'Use a duration like 100ms, 1.5s, 2m';
    if (max === null) errs.maxDuration = 'Use a duration like 100ms, 1.5s, 2m';
    if (min && max && min > max) errs.maxDuration = 'Max is below min';
    const lim = limit.trim() === '' ? DEFAULT_LIMIT : limit.trim();
    if (!/^\d+$/.test(lim) || Number(lim) < 1) errs.limit = 'A positive number';
    setErrors(errs);
    if (Object.keys(errs).length) return;
    props.onSearch({
      service,
      operation,
      tags: parsed.tags,
      status,
      minDuration: minD.trim(),
      maxDuration: maxD.trim(),
      limit: lim,
    });
  };

  return (
    <form class="search-form" onSubmit={submit} data-testid="search-form">
      <ErrorBanner error={services.error} what="Loading services" />
      <ErrorBanner error={ops.error} what="Loading operations" />
      <label class="field">
        <span>Service</span>
        <select
          name="service"
          value={service}
          onChange={(e) => {
            setService(e.currentTarget.value);
            setOperation('');
          }}
        >
          <option value="">All services</option>
          {serviceOptions.map((s) => (
            <option key={s} value={s}>
              {s}
            </option>
          ))}
        </select>
      </label>
      <label class="field">
        <span>Operation</span>
        <select
          name="operation"
          value={operation}
          disabled={!service}
          onChange={(e) => setOperation(e.currentTarget.value)}
        >
          <option value="">{service ? (ops.loading ? 'Loading…' : 'All operations') : 'Pick a service first'}</option>
          {opOptions.map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      </label>
      <label class="field">
        <span>Tags</span>
        <textarea
          name="tags"
          rows={2}
          spellcheck={false}
          placeholder={'http.response.status_code=500\nhttp.route="/cart"'}
          value={tagText}
          onInput={(e) => setTagText(e.currentTarget.value)}
        />
        {errors.tags && <span class="field-error">{errors.tags}</span>}
      </label>
      <label class="field">
        <span>Status</span>
        <select name="status" value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
          <option value="">Any</option>
          <option value="error">Error</option>
          <option value="ok">OK</option>
          <option value="unset">Unset</option>
        </select>
      </label>
      <div class="field-pair">
        <label class="field">
          <span>Min duration</span>
          <input name="minDuration" placeholder="e.g. 100ms" value={minD} onInput={(e) => setMinD(e.currentTarget.value)} />
          {errors.minDuration && <span class="field-error">{errors.minDuration}</span>}
        </label>
        <label class="field">
          <span>Max duration</span>
          <input name="maxDuration" placeholder="e.g. 2s" value={maxD} onInput={(e) => setMaxD(e.currentTarget.value)} />
          {errors.maxDuration && <span class="field-error">{errors.maxDuration}</span>}
        </label>
      </div>
      <label class="field">
        <span>Limit</span>
        <input name="limit" type="number" min={1} max={1000} value={limit} onInput={(e) => setLimit(e.currentTarget.value)} />
        {errors.limit && <span class="field-error">{errors.limit}</span>}
      </label>
      <button type="submit" class="btn btn-primary btn-wide" disabled={props.busy} data-testid="find-traces">
        {props.busy ? 'Searching…' : 'Find traces'}
      </button>
    </form>
  );
}
