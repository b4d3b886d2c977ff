// The DLQ viewer: filters and paging over open entries, an entry's detail (payload, headers,
// attempts), replay and discard with confirmation, bulk replay of the filtered set with progress.
import { api, ApiError, h, clear, fmtTime, say, isAdmin, ownTenant, toLocalInput, fromLocalInput, sleep } from './common.js';

const $ = (id) => document.getElementById(id);
const form = $('filters');
const statusEl = $('status');
const tbody = document.querySelector('#dlq-table tbody');
const table = $('dlq-table');
const emptyEl = $('empty');
const detail = $('detail');

// Most entries one bulk replay touches from this page (the API allows up to 10,000).
const BULK_MAX = 1000;
// How often, and how long at most, a bulk replay job is polled.
const JOB_POLL_MS = 500;
const JOB_POLL_LIMIT_MS = 10 * 60 * 1000;

let endpoints = []; // every endpoint the caller sees
let cursors = [null]; // cursor of each page visited; the last is the current page
let nextCursor = null;
let shown = []; // entries on the page
let openId = null; // entry shown in the detail panel
let lastFocus = null;
let loadSeq = 0; // answers of superseded loads are dropped

function tenant() { return isAdmin ? $('f-tenant').value : ownTenant; }

function endpointLabel(id) {
  const e = endpoints.find((x) => x.id === id);
  return e ? e.url : id || '—';
}

// The filters as API parameters (since/until resolved now).
function filterParams() {
  const p = new URLSearchParams();
  if (isAdmin && tenant()) p.set('tenant_id', tenant());
  if ($('f-endpoint').value) p.set('endpoint_id', $('f-endpoint').value);
  const type = $('f-type').value.trim();
  if (type) p.set('event_type', type);
  const range = $('f-range').value;
  if (range === 'custom') {
    const since = fromLocalInput($('f-since').value);
    const until = fromLocalInput($('f-until').value);
    if (since !== null) p.set('since', String(since));
    if (until !== null) p.set('until', String(until + 59_999));
  } else {
    const until = Date.now() + 60_000;
    p.set('since', String(until - Number(range)));
    p.set('until', String(until));
  }
  return p;
}

function fillEndpoints() {
  const sel = $('f-endpoint');
  const keep = sel.value;
  clear(sel);
  sel.append(h('option', { value: '' }, 'All endpoints'));
  for (const e of endpoints.filter((e) => !tenant() || e.tenant_id === tenant())) {
    sel.append(h('option', { value: e.id }, `${e.url} (${e.id})`));
  }
  sel.value = [...sel.options].some((o) => o.value === keep) ? keep : '';
}

async function init() {
  try {
    endpoints = (await api('/api/endpoints')).data;
  } catch (e) {
    say(statusEl, `Could not load the endpoints: ${e.message}`, 'error');
    return;
  }
  if (isAdmin) {
    $('tenant-field').hidden = false;
    const sel = $('f-tenant');
    const names = [...new Set(endpoints.map((e) => e.tenant_id))].sort();
    for (const t of names) sel.append(h('option', { value: t }, t));
    if (!names.length) sel.append(h('option', { value: '' }, 'no tenants yet'));
    sel.addEventListener('change', () => { fillEndpoints(); restart(); });
  }
  fillEndpoints();
  $('f-range').addEventListener('change', () => {
    const custom = $('f-range').value === 'custom';
    $('custom-range').hidden = !custom;
    if (custom && !$('f-since').value) {
      $('f-since').value = toLocalInput(Date.now() - 86_400_000);
      $('f-until').value = toLocalInput(Date.now());
    }
  });
  form.addEventListener('submit', (ev) => { ev.preventDefault(); restart(); });
  $('reset').addEventListener('click', () => {
    // Explicit defaults (the tenant stays): form.reset() keeps dynamically chosen options.
    $('f-endpoint').value = '';
    $('f-type').value = '';
    $('f-range').value = '604800000';
    $('f-since').value = '';
    $('f-until').value = '';
    $('f-q').value = '';
    $('f-limit').value = '50';
    $('custom-range').hidden = true;
    restart();
  });
  $('prev').addEventListener('click', () => { if (cursors.length > 1) { cursors.pop(); load(); } });
  $('next').addEventListener('click', () => { if (nextCursor) { cursors.push(nextCursor); load(); } });
  $('detail-close').addEventListener('click', closeDetail);
  $('detail-replay').addEventListener('click', () => openId && replay(openId));
  $('detail-discard').addEventListener('click', () => openId && discard(openId));
  $('bulk-replay').addEventListener('click', bulkReplay);
  detail.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') closeDetail(); });
  await load();
}

function restart() {
  cursors = [null];
  load();
}

// Loads the current page; `consistency` makes the read wait until a command is projected.
async function load(consistency) {
  if (isAdmin && !tenant()) {
    showRows([], 'No endpoints exist yet, so nothing can be in the DLQ. Create an endpoint with POST /api/endpoints.');
    return;
  }
  const p = filterParams();
  const q = $('f-q').value.trim();
  p.set('limit', $('f-limit').value);
  let path;
  if (q) {
    p.set('q', q);
    path = '/api/webhooks/dlq/search?' + p;
  } else {
    const cursor = cursors[cursors.length - 1];
    if (cursor) p.set('cursor', cursor);
    if (consistency) p.set('consistency', consistency);
    path = '/api/webhooks/dlq?' + p;
  }
  table.setAttribute('aria-busy', 'true');
  const seq = ++loadSeq;
  try {
    const page = await api(path);
    if (seq !== loadSeq) return;
    nextCursor = q ? null : (page.data.length ? page.next_cursor : null);
    let empty = 'No open DLQ entries match these filters. Widen the time range or clear a filter; entries appear here when a delivery runs out of retries.';
    if (q) empty = `No open entry id or delivery id contains “${q}” (${page.scanned} entries searched${page.truncated ? ', search stopped at its limit: narrow the filters' : ''}).`;
    showRows(page.data, empty);
    if (q && page.truncated) say(statusEl, `Searched the newest ${page.scanned} entries only; narrow the filters to search further back.`, 'info');
  } catch (e) {
    if (seq !== loadSeq) return;
    showRows([], '');
    say(statusEl, `Could not load the DLQ: ${e.message}`, 'error');
  } finally {
    table.removeAttribute('aria-busy');
  }
}

// A time that wraps only between its date and its clock.
function when(ms) {
  const [date, clock] = fmtTime(ms).split(' ');
  return clock ? [h('span', { class: 'nowrap' }, date), ' ', h('span', { class: 'nowrap' }, clock)] : date;
}

// Entry ids are time-ordered UUIDs: their ends tell entries apart.
const SHORT_ID_CHARS = 12;
function shortId(id) { return id.length > SHORT_ID_CHARS + 1 ? `…${id.slice(-SHORT_ID_CHARS)}` : id; }

function showRows(rows, emptyText) {
  shown = rows;
  clear(tbody);
  for (const r of rows) {
    const err = [r.last_error_kind, r.last_status_code].filter((x) => x !== null && x !== undefined && x !== '').join(' ');
    tbody.append(h('tr', { 'data-id': r.id },
      h('td', {}, h('button', { type: 'button', class: 'link mono', title: r.id, 'aria-label': `Show entry ${r.id}`, on: { click: (ev) => { lastFocus = ev.currentTarget; showDetail(r.id); } } }, shortId(r.id))),
      h('td', {}, when(r.moved_at)),
      h('td', { title: r.endpoint_id || '', class: 'url' }, endpointLabel(r.endpoint_id)),
      h('td', {}, r.event_type || '—'),
      h('td', {}, err || '—'),
      h('td', { class: 'row-actions' },
        h('button', { type: 'button', 'aria-label': `Replay entry ${r.id}`, on: { click: () => replay(r.id) } }, 'Replay'),
        h('button', { type: 'button', class: 'danger', 'aria-label': `Discard entry ${r.id}`, on: { click: () => discard(r.id) } }, 'Discard')),
    ));
  }
  table.hidden = rows.length === 0;
  emptyEl.hidden = rows.length !== 0;
  emptyEl.textContent = emptyText;
  const q = $('f-q').value.trim();
  $('prev').disabled = q !== '' || cursors.length <= 1;
  $('next').disabled = !nextCursor;
  $('page-no').textContent = q ? 'Search results' : `Page ${cursors.length}`;
  $('bulk-replay').disabled = rows.length === 0 || q !== '';
  $('bulk-replay').title = q ? 'Clear the id search to replay the filtered set' : '';
}

// Resolves true when the operator confirms.
function confirmAction(title, text, okLabel) {
  const dlg = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-body').textContent = text;
  $('confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.returnValue = 'cancel';
    dlg.showModal();
    $('confirm-cancel').focus();
  });
}

async function replay(id) {
  const entry = shown.find((e) => e.id === id);
  const to = entry ? endpointLabel(entry.endpoint_id) : 'its endpoint';
  if (!await confirmAction('Replay this entry?', `Entry ${id} will be delivered again to ${to}, with its original webhook-id.`, 'Replay')) return;
  try {
    const r = await api(`/api/webhooks/dlq/${encodeURIComponent(id)}/replay`, { method: 'POST' });
    say(statusEl, `Replayed entry ${id} as delivery ${r.replay_delivery_id}.`, 'ok');
    afterCommand(id, r.consistency_token);
  } catch (e) {
    commandFailed(id, 'replay', e);
  }
}

async function discard(id) {
  if (!await confirmAction('Discard this entry?', `Entry ${id} will be removed from the DLQ and never delivered. This cannot be undone.`, 'Discard')) return;
  try {
    const r = await api(`/api/webhooks/dlq/${encodeURIComponent(id)}`, { method: 'DELETE' });
    say(statusEl, `Discarded entry ${id}.`, 'ok');
    afterCommand(id, r.consistency_token);
  } catch (e) {
    commandFailed(id, 'discard', e);
  }
}

function afterCommand(id, token) {
  if (openId === id) closeDetail();
  load(token);
}

function commandFailed(id, what, e) {
  if (e instanceof ApiError && e.status === 409) {
    say(statusEl, `Entry ${id} was already replayed or discarded (perhaps by someone else); the list is refreshed.`, 'info');
    if (openId === id) closeDetail();
    load();
  } else {
    say(statusEl, `Could not ${what} entry ${id}: ${e.message}`, 'error');
  }
}

function describeFilters(p) {
  const parts = [];
  if (isAdmin) parts.push(`tenant ${tenant()}`);
  parts.push(p.get('endpoint_id') ? `endpoint ${endpointLabel(p.get('endpoint_id'))}` : 'every endpoint');
  if (p.get('event_type')) parts.push(`event type ${p.get('event_type')}`);
  parts.push(`moved between ${fmtTime(Number(p.get('since')))} and ${fmtTime(Number(p.get('until')))}`);
  return parts.join(', ');
}

async function bulkReplay() {
  const p = filterParams();
  const text = `Every open entry of ${describeFilters(p)} (at most ${BULK_MAX}) will be delivered again, each with its original webhook-id.`;
  if (!await confirmAction('Replay every matching entry?', text, 'Replay all')) return;
  const bodyJson = { max: BULK_MAX };
  for (const k of ['tenant_id', 'endpoint_id', 'event_type']) if (p.get(k)) bodyJson[k] = p.get(k);
  bodyJson.since = Number(p.get('since'));
  bodyJson.until = Number(p.get('until'));
  if (!isAdmin) delete bodyJson.tenant_id;
  const btn = $('bulk-replay');
  const bar = $('bulk-progress');
  const label = $('bulk-text');
  btn.disabled = true;
  $('bulk').hidden = false;
  bar.removeAttribute('value'); // indeterminate until the job counts
  label.textContent = 'Starting…';
  try {
    const job = await api('/api/webhooks/dlq/replay', { method: 'POST', json: bodyJson });
    const started = Date.now();
    let j = job;
    while (Date.now() - started < JOB_POLL_LIMIT_MS) {
      j = await api(`/api/webhooks/dlq/jobs/${encodeURIComponent(job.job_id)}`);
      const handled = (j.replayed || 0) + (j.skipped || 0) + (j.failed || 0);
      label.textContent = `${j.state === 'running' ? 'Replaying' : 'Finished'}: ${j.replayed || 0} replayed, ${j.skipped || 0} skipped, ${j.failed || 0} failed${j.total ? ` of ${j.total}` : ''}.`;
      if (j.total) { bar.max = j.total; bar.value = handled; }
      if (j.state !== 'running') break;
      await sleep(JOB_POLL_MS);
    }
    if (j.state === 'running') {
      say(statusEl, `Bulk replay ${job.job_id} is still running; its progress stays available at GET /api/webhooks/dlq/jobs/${job.job_id}.`, 'info');
    } else if (j.state === 'failed') {
      say(statusEl, `Bulk replay stopped with an error after ${j.replayed || 0} entries. See the api log, then try again.`, 'error');
    } else {
      bar.max = 1; bar.value = 1;
      say(statusEl, `Bulk replay finished: ${j.replayed} replayed, ${j.skipped} skipped (already handled), ${j.failed} failed.`, j.failed ? 'error' : 'ok');
    }
    // The job's events reach the read models within moments: refresh a few times.
    cursors = [null];
    for (const wait of [0, 1000, 2000, 4000]) {
      await sleep(wait);
      await load();
    }
  } catch (e) {
    say(statusEl, `Bulk replay could not start: ${e.message}`, 'error');
  } finally {
    btn.disabled = shown.length === 0;
  }
}

function field(dl, name, value) {
  dl.append(h('dt', {}, name), h('dd', {}, value === null || value === undefined || value === '' ? '—' : String(value)));
}

function prettyPayload(entry) {
  if (entry.payload_encoding === 'base64') return `Binary payload, base64:\n${entry.payload}`;
  if ((entry.content_type || '').includes('json')) {
    try { return JSON.stringify(JSON.parse(entry.payload), null, 2); } catch (e) { /* shown as sent */ }
  }
  return entry.payload;
}

async function showDetail(id) {
  openId = id;
  detail.hidden = false;
  $('detail-h').textContent = `Entry ${id}`;
  const dl = $('detail-fields');
  clear(dl);
  clear(document.querySelector('#detail-attempts tbody'));
  clear(document.querySelector('#detail-headers tbody'));
  $('detail-payload').textContent = 'Loading…';
  detail.focus();
  let d, req;
  try {
    [d, req] = await Promise.all([
      api(`/api/webhooks/dlq/${encodeURIComponent(id)}`),
      api(`/api/webhooks/dlq/${encodeURIComponent(id)}/request`),
    ]);
  } catch (e) {
    $('detail-payload').textContent = '';
    say(statusEl, e.status === 404 ? `Entry ${id} no longer exists.` : `Could not load entry ${id}: ${e.message}`, 'error');
    return;
  }
  if (openId !== id) return;
  const e = d.entry;
  field(dl, 'State', e.state);
  field(dl, 'Endpoint', `${endpointLabel(e.endpoint_id)} (${e.endpoint_id || '—'})`);
  field(dl, 'Event type', e.event_type);
  field(dl, 'Tenant', e.tenant_id);
  field(dl, 'Moved to the DLQ', fmtTime(e.moved_at));
  field(dl, 'Reason', e.reason);
  field(dl, 'Attempts', e.attempts);
  field(dl, 'Last error', [e.last_error_kind, e.last_status_code, e.last_error_message].filter((x) => x !== null && x !== undefined && x !== '').join(' · '));
  field(dl, 'Delivery', e.delivery_id);
  field(dl, 'Message (webhook-id)', e.message_id);
  field(dl, 'Triggered', fmtTime(e.trigger_occurred_at));
  field(dl, 'Correlation id', e.correlation_id);
  const open = e.state === 'open';
  $('detail-replay').disabled = !open;
  $('detail-discard').disabled = !open;
  $('detail-payload').textContent = prettyPayload(e);
  $('headers-note').textContent = `${req.method} ${req.url || '(endpoint deleted)'} — ${req.note}`;
  const hb = document.querySelector('#detail-headers tbody');
  for (const x of req.headers) hb.append(h('tr', {}, h('th', { scope: 'row', class: 'mono' }, x.name), h('td', { class: x.exact ? 'mono' : 'hint' }, x.value)));
  const ab = document.querySelector('#detail-attempts tbody');
  for (const a of d.attempts) {
    ab.append(h('tr', { class: a.outcome === 'succeeded' ? 'ok' : 'bad' },
      h('td', {}, a.attempt),
      h('td', {}, when(a.occurred_at)),
      h('td', {}, a.outcome || '—'),
      h('td', {}, a.status_code ?? '—'),
      h('td', { class: 'num' }, a.duration_ms === null || a.duration_ms === undefined ? '—' : `${a.duration_ms} ms`),
      h('td', {}, a.error_kind || '—'),
      h('td', {}, a.error_message || '—'),
      h('td', {}, a.response_excerpt ? h('code', {}, a.response_excerpt) : '—')));
  }
  $('detail-attempts').hidden = d.attempts.length === 0;
  $('attempts-empty').hidden = d.attempts.length !== 0;
}

function closeDetail() {
  detail.hidden = true;
  openId = null;
  if (lastFocus && document.contains(lastFocus)) lastFocus.focus();
}

init();
