// Shared helpers for the pages: JSON API calls with the session cookie, DOM building without
// innerHTML (every value is text, never markup), formatting.

const CSRF_HEADER = 'x-hookline-csrf';

export const body = document.body.dataset;
export const isAdmin = body.admin === 'true';
export const ownTenant = body.tenant || '';

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// Calls the JSON API. State-changing requests carry the CSRF header the server requires of
// cookie sessions. A 401 means the session ended: back to the sign-in page.
export async function api(path, { method = 'GET', json } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers[CSRF_HEADER] = '1';
  if (json !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: json === undefined ? undefined : JSON.stringify(json),
    });
  } catch (e) {
    throw new ApiError(0, 'The server did not answer. Check that the api process is running, then try again.');
  }
  if (resp.status === 401) {
    location.assign('/ui/login?next=' + encodeURIComponent(location.pathname));
    throw new ApiError(401, 'Your session ended; sign in again.');
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!resp.ok) {
    let detail = (data && data.detail) || `HTTP ${resp.status}`;
    if (resp.status >= 500) detail += '. The read models or Kafka may be unavailable: check GET /readyz, then try again.';
    throw new ApiError(resp.status, detail);
  }
  return data;
}

// h('td', {class: 'x'}, 'text', otherNode): builds an element; strings become text nodes.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') { for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn); continue; }
    if (k === 'text') { el.textContent = v; continue; }
    el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

const pad = (n) => String(n).padStart(2, '0');

// Local time, to the second: 2024-05-01 14:03:09.
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtClock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fmtMs(v) { return v === null || v === undefined ? '—' : `${v} ms`; }

export function fmtPct(v) { return v === null || v === undefined ? '—' : `${(v * 100).toFixed(1)} %`; }

// A message in the page's live region: kind is 'ok', 'error' or 'info'.
export function say(el, text, kind = 'info') {
  el.textContent = text;
  el.className = `status ${kind}`;
}

// Value for a datetime-local input from ms, and back.
export function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function fromLocalInput(v) {
  if (!v) return null;
  const t = new Date(v).getTime();
  return Number.isNaN(t) ? null : t;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Tenants of the endpoints the caller can see (for an admin's tenant choice).
export async function tenants() {
  const eps = await api('/api/endpoints');
  return [...new Set(eps.data.map((e) => e.tenant_id))].sort();
}
