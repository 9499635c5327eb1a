// Small shared components: in-app links, the API error banner, service chips, loading and empty states.
import type { ComponentChildren } from 'preact';
import { ApiError } from '../api';
import { serviceColor } from '../format';
import { onLinkClick } from '../url';

export function Link(props: { href: string; class?: string; title?: string; children: ComponentChildren }) {
  return (
    <a href={props.href} class={props.class} title={props.title} onClick={onLinkClick}>
      {props.children}
    </a>
  );
}

/** Visible banner for a failed API call; shows the server's error code and message. */
export function ErrorBanner(props: { error: Error | undefined; what?: string }) {
  const e = props.error;
  // 401s are answered by the shell's API-token prompt instead.
  if (!e || (e instanceof ApiError && e.status === 401)) return null;
  const api = e instanceof ApiError ? e : undefined;
  return (
    <div class="error-banner" role="alert" data-testid="error-banner">
      <strong>{props.what ? `${props.what} failed` : 'Request failed'}</strong>
      {api && api.status > 0 && <span class="error-code">HTTP {api.status}</span>}
      {api && <span class="error-code">{api.code}</span>}
      <span class="error-msg">{e.message}</span>
    </div>
  );
}

export function ServiceDot(props: { name: string }) {
  return <span class="svc-dot" style={{ background: serviceColor(props.name) }} />;
}

export function ServiceChip(props: { name: string; count?: number; errors?: number }) {
  const color = serviceColor(props.name);
  return (
    <span class="svc-chip" style={{ borderColor: color }} title={props.name}>
      <span class="svc-chip-swatch" style={{ background: color }} />
      <span class="svc-chip-name">{props.name}</span>
      {props.count !== undefined && <span class="svc-chip-count">{props.count}</span>}
      {!!props.errors && <span class="svc-chip-err" title={`${props.errors} error spans`}>{props.errors} err</span>}
    </span>
  );
}

export function Loading(props: { what?: string }) {
  return (
    <div class="loading">
      <span class="spinner" /> Loading{props.what ? ` ${props.what}` : ''}…
    </div>
  );
}

export function Empty(props: { children: ComponentChildren }) {
  return <div class="empty">{props.children}</div>;
}

export function ErrorIcon(props: { title?: string }) {
  return (
    <span class="err-icon" title={props.title ?? 'error'} aria-label="error">
      !
    </span>
  );
}
