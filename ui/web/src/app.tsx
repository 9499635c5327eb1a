// App shell: top bar (product name, navigation, trace-id box, time-range picker), the
// API-token prompt shown after a 401, and the path router that picks the page. A trace id
// pasted anywhere outside a text field opens that trace.
import { useEffect, useState } from 'preact/hooks';
import { UNAUTHORIZED_EVENT, getToken, setToken } from './api';
import { Link } from './components/common';
import { TimePicker } from './components/TimePicker';
import { LogsPage } from './pages/Logs';
import { MetricsPage } from './pages/Metrics';
import { ServicesPage } from './pages/Services';
import { TracesPage } from './pages/Traces';
import { TraceViewPage } from './pages/TraceView';
import { href, navigate, timeParams, useRoute, type Route } from './url';

const NAV = [
  { path: '/traces', label: 'Traces' },
  { path: '/logs', label: 'Logs' },
  { path: '/metrics-explorer', label: 'Metrics' },
  { path: '/services', label: 'Services' },
];

function TokenForm(props: { onSaved: () => void; onCancel: () => void }) {
  const [value, setValue] = useState(getToken());
  const submit = (e: Event) => {
    e.preventDefault();
    setToken(value.trim());
    props.onSaved();
  };
  return (
    <form class="token-form" onSubmit={submit} data-testid="token-form">
      <div>
        <strong>This Loupe server needs an API token.</strong> It is kept in this browser's local storage and
        sent as a bearer token with every API call. Leave it empty and save to forget a stored token.
      </div>
      <div class="token-row">
        <input
          type="password"
          autoComplete="off"
          placeholder="API token"
          value={value}
          onInput={(e) => setValue(e.currentTarget.value)}
          autoFocus
        />
        <button type="submit" class="btn btn-primary">
          Save token
        </button>
        <button type="button" class="btn" onClick={props.onCancel}>
          Dismiss
        </button>
      </div>
    </form>
  );
}

/** A trace id as people paste it: 16 or 32 hex digits (Jaeger prints 64-bit ids as 16). */
export function asTraceId(text: string): string | null {
  const t = text.trim().toLowerCase();
  return /^(?:[0-9a-f]{16}|[0-9a-f]{32})$/.test(t) ? t : null;
}

function openTrace(id: string, params: URLSearchParams) {
  navigate(href(`/traces/${id}`, timeParams(params)));
}

function TraceIdBox(props: { route: Route }) {
  const [text, setText] = useState('');
  const [bad, setBad] = useState(false);
  const submit = (e: Event) => {
    e.preventDefault();
    const id = asTraceId(text);
    setBad(!id);
    if (id) {
      setText('');
      openTrace(id, props.route.params);
    }
  };
  return (
    <form class="trace-id-box" onSubmit={submit}>
      <input
        class={`mono${bad ? ' invalid' : ''}`}
        placeholder="Trace ID"
        title={bad ? 'A trace id is 16 or 32 hex digits' : 'Open a trace by its id (or paste an id anywhere)'}
        value={text}
        onInput={(e) => {
          setText(e.currentTarget.value);
          setBad(false);
        }}
        data-testid="trace-id-input"
      />
    </form>
  );
}

function Page(props: { route: Route }) {
  const { path } = props.route;
  const trace = /^\/traces\/([^/]+)\/?$/.exec(path);
  if (trace) return <TraceViewPage route={props.route} traceId={decodeURIComponent(trace[1])} />;
  switch (path.replace(/\/+$/, '')) {
    case '/traces':
      return <TracesPage route={props.route} />;
    case '/services':
      return <ServicesPage route={props.route} />;
    case '/logs':
      return <LogsPage route={props.route} />;
    case '/metrics-explorer':
      return <MetricsPage route={props.route} />;
    default:
      return (
        <div class="page">
          <h1>Page not found</h1>
          <p>
            There is no page at <code>{path}</code>. <Link href="/traces">Search traces</Link>.
          </p>
        </div>
      );
  }
}

export function App() {
  const route = useRoute();
  const [needToken, setNeedToken] = useState(false);
  const [showTokenButton, setShowTokenButton] = useState(() => getToken() !== '');
  const [epoch, setEpoch] = useState(0);

  useEffect(() => {
    if (route.path === '/' || route.path === '') navigate(href('/traces', Object.fromEntries(route.params)), { replace: true });
  }, [route.path]);

  // Paste a trace id anywhere (outside text fields) to open it.
  useEffect(() => {
    const onPaste = (e: ClipboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (t && (t.closest('input, textarea, select') || t.isContentEditable)) return;
      const id = asTraceId(e.clipboardData?.getData('text') ?? '');
      if (!id) return;
      e.preventDefault();
      openTrace(id, new URLSearchParams(window.location.search));
    };
    document.addEventListener('paste', onPaste);
    return () => document.removeEventListener('paste', onPaste);
  }, []);

  useEffect(() => {
    const on401 = () => {
      setNeedToken(true);
      setShowTokenButton(true);
    };
    window.addEventListener(UNAUTHORIZED_EVENT, on401);
    return () => window.removeEventListener(UNAUTHORIZED_EVENT, on401);
  }, []);

  const section = '/' + (route.path.split('/')[1] ?? '');
  const keep = timeParams(route.params);

  return (
    <div class="shell">
      <header class="topbar">
        <Link href={href('/traces', keep)} class="brand">
          <svg width="18" height="18" viewBox="0 0 16 16" aria-hidden="true">
            <circle cx="6.5" cy="6.5" r="4.5" fill="none" stroke="currentColor" stroke-width="2" />
            <path d="M10 10l4.5 4.5" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" />
          </svg>
          Loupe
        </Link>
        <nav class="nav">
          {NAV.map((n) => (
            <Link key={n.path} href={href(n.path, keep)} class={section === n.path ? 'active' : ''}>
              {n.label}
            </Link>
          ))}
        </nav>
        <div class="topbar-right">
          <TraceIdBox route={route} />
          {showTokenButton && !needToken && (
            <button type="button" class="btn topbar-btn" onClick={() => setNeedToken(true)} title="Change the API token">
              API token
            </button>
          )}
          <TimePicker route={route} />
        </div>
      </header>
      {needToken && (
        <TokenForm
          onSaved={() => {
            setNeedToken(false);
            setEpoch(epoch + 1);
          }}
          onCancel={() => setNeedToken(false)}
        />
      )}
      <main class="main" key={epoch}>
        <Page route={route} />
      </main>
    </div>
  );
}
