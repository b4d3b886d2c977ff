// The health dashboard: per-endpoint table (sortable, filterable), charts for every endpoint or
// one, consumer and projector lag, refreshed every few seconds.
import { api, h, clear, fmtTime, fmtMs, fmtPct, say, isAdmin } from './common.js';
import { stackedBars, lines } from './charts.js';

const $ = (id) => document.getElementById(id);
const statusEl = $('status');
const tbody = document.querySelector('#ep-table tbody');
const REFRESH_MS = 10_000;

let data = null; // last overview answer
let sortKey = 'url';
let sortDir = 1;
let chartEndpoint = null; // endpoint charted, or null for all
let timer = null;
let inFlight = false;

const OUTCOMES = [
  { key: 'succeeded', label: 'Attempts succeeded', cls: 'succeeded' },
  { key: 'failed', label: 'Attempts failed', cls: 'failed' },
  { key: 'deferred', label: 'Deferred', cls: 'deferred' },
  { key: 'dead_lettered', label: 'Moved to the DLQ', cls: 'dead' },
];
const PERCENTILES = [
  { key: 'latency_p50_ms', label: 'p50', cls: 'p50' },
  { key: 'latency_p95_ms', label: 'p95', cls: 'p95' },
  { key: 'latency_p99_ms', label: 'p99', cls: 'p99' },
];
const CIRCUIT_LABEL = { closed: 'closed', open: 'open', half_open: 'half-open' };
const CIRCUIT_RANK = { closed: 0, half_open: 1, open: 2 };

function sortValue(e, key) {
  switch (key) {
    case 'circuit': return CIRCUIT_RANK[e.circuit.state];
    case 'rate_limit': return e.rate_limit ? e.rate_limit.per_second : Infinity;
    case 'enabled': return e.enabled ? 0 : 1;
    default: return e[key];
  }
}

function compare(a, b) {
  const x = sortValue(a, sortKey);
  const y = sortValue(b, sortKey);
  const nx = x === null || x === undefined;
  const ny = y === null || y === undefined;
  if (nx || ny) return nx === ny ? 0 : nx ? 1 : -1; // no data sorts last either way
  if (typeof x === 'string') return x.localeCompare(y) * sortDir;
  return (x - y) * sortDir;
}

function visible(e) {
  const f = $('c-filter').value.trim().toLowerCase();
  if (f && ![e.id, e.url, e.tenant_id, e.description].some((v) => (v || '').toLowerCase().includes(f))) return false;
  switch ($('c-state').value) {
    case 'circuit': return e.circuit.state !== 'closed';
    case 'disabled': return !e.enabled;
    case 'dlq': return e.dlq_depth > 0;
    case 'failing': return e.failures > 0;
    default: return true;
  }
}

function circuitCell(c) {
  const text = CIRCUIT_LABEL[c.state];
  const cell = h('td', { class: `circuit ${c.state}` }, h('span', { class: 'badge' }, text));
  if (c.since) cell.append(h('div', { class: 'hint' }, `since ${fmtTime(c.since)}`));
  if (c.state === 'open' && c.open_until) cell.append(h('div', { class: 'hint' }, `cool-down until ${fmtTime(c.open_until)}`));
  return cell;
}

function renderTable() {
  clear(tbody);
  const rows = data.endpoints.filter(visible).sort(compare);
  for (const e of rows) {
    const charted = chartEndpoint === e.id;
    tbody.append(h('tr', { 'data-id': e.id, class: [charted ? 'selected' : '', e.enabled ? '' : 'disabled'].join(' ').trim() || null },
      h('td', {}, h('div', { class: 'url' }, e.url), h('div', { class: 'hint mono' }, e.id)),
      h('td', {}, e.tenant_id),
      h('td', { class: 'num' }, fmtPct(e.success_rate)),
      h('td', { class: 'num' }, fmtMs(e.latency_p50_ms)),
      h('td', { class: 'num' }, fmtMs(e.latency_p95_ms)),
      h('td', { class: 'num' }, e.throughput_per_minute.toFixed(1)),
      circuitCell(e.circuit),
      h('td', {}, e.rate_limit ? `${e.rate_limit.per_second}/s, burst ${e.rate_limit.burst}` : 'none'),
      h('td', { class: 'num' }, e.dlq_depth > 0 ? h('a', { href: '/ui/dlq' }, String(e.dlq_depth)) : '0'),
      h('td', {}, e.enabled ? 'no' : h('span', { class: 'badge off', title: e.disabled_reason || '' }, `yes${e.disabled_reason ? ': ' + e.disabled_reason : ''}`)),
      h('td', {}, h('button', {
        type: 'button', 'aria-pressed': charted ? 'true' : 'false', 'aria-label': `Chart ${e.url}`,
        on: { click: () => { chartEndpoint = charted ? null : e.id; refresh(); } },
      }, charted ? 'Charted' : 'Chart')),
    ));
  }
  $('ep-table').hidden = rows.length === 0;
  const empty = $('empty');
  empty.hidden = rows.length !== 0;
  empty.textContent = data.endpoints.length === 0
    ? 'No endpoints yet. Create one with POST /api/endpoints, trigger events, and their health appears here.'
    : 'No endpoint matches these filters. Clear the filter box or choose “every endpoint”.';
  if (data.truncated) say(statusEl, `Showing the first ${data.endpoints.length} endpoints; ${data.truncated} more are not listed. Choose a tenant to narrow the list.`, 'info');
  for (const th of document.querySelectorAll('#ep-table th[data-key]')) {
    th.setAttribute('aria-sort', th.dataset.key === sortKey ? (sortDir > 0 ? 'ascending' : 'descending') : 'none');
  }
}

function renderCharts() {
  const ep = chartEndpoint && data.endpoints.find((e) => e.id === chartEndpoint);
  const scope = ep ? ep.url : 'All endpoints';
  $('charts-h').textContent = ep ? `Endpoint ${ep.url}` : 'All endpoints';
  $('chart-all').hidden = !ep;
  const minutes = data.series.minutes;
  stackedBars($('chart-outcomes'), minutes, OUTCOMES, `Nothing was delivered, deferred or dead-lettered (${scope}) in this window.`);
  lines($('chart-latency'), minutes, PERCENTILES, 'ms', `No attempts (${scope}) in this window, so no latency.`);
}

async function renderLag() {
  const box = $('lag');
  let lag;
  try {
    lag = await api('/api/system/lag');
  } catch (e) {
    clear(box);
    box.append(h('p', { class: e.status === 403 ? 'hint' : 'error' }, e.status === 403
      ? 'Consumer and projector lag are visible with an admin token.'
      : `Could not read the lag from Kafka: ${e.message}`));
    return;
  }
  clear(box);
  const groups = lag.groups || [];
  const table = (title, list, what) => h('figure', {},
    h('figcaption', {}, title),
    list.length ? h('table', { class: 'grid compact' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Consumer group'), h('th', { scope: 'col' }, 'Topic'), h('th', { scope: 'col', class: 'num' }, 'Records behind'), h('th', { scope: 'col' }, 'Partitions'))),
      h('tbody', {}, list.map((g) => h('tr', { class: g.total_lag > 0 ? 'behind' : '' },
        h('td', { class: 'mono' }, g.group), h('td', { class: 'mono' }, g.topic), h('td', { class: 'num' }, g.total_lag),
        h('td', { class: 'hint' }, g.partitions.map((p) => `${p.partition}: ${p.lag}`).join(' · '))))))
      : h('p', { class: 'empty' }, `No ${what} group has committed yet.`));
  box.append(
    table('Consumer lag (router, dispatcher)', groups.filter((g) => !g.group.includes('projector')), 'pipeline'),
    table('Projector lag (read models behind the log)', groups.filter((g) => g.group.includes('projector')), 'projector'),
  );
}

async function refresh() {
  if (inFlight) return;
  inFlight = true;
  const p = new URLSearchParams({ window: $('c-window').value });
  if (isAdmin && $('c-tenant').value) p.set('tenant_id', $('c-tenant').value);
  if (chartEndpoint) p.set('series_endpoint_id', chartEndpoint);
  try {
    data = await api('/api/overview?' + p);
    if (chartEndpoint && !data.endpoints.some((e) => e.id === chartEndpoint)) chartEndpoint = null;
    renderTable();
    renderCharts();
    await renderLag();
    $('updated').textContent = `Updated ${fmtTime(data.generated_at)}`;
    if (statusEl.classList.contains('error')) say(statusEl, '', 'info');
  } catch (e) {
    say(statusEl, `Could not refresh the dashboard: ${e.message}`, 'error');
  } finally {
    inFlight = false;
  }
}

function schedule() {
  clearInterval(timer);
  timer = $('c-auto').checked ? setInterval(refresh, REFRESH_MS) : null;
}

async function init() {
  if (isAdmin) {
    $('tenant-field').hidden = false;
    try {
      const eps = await api('/api/endpoints');
      for (const t of [...new Set(eps.data.map((e) => e.tenant_id))].sort()) $('c-tenant').append(h('option', { value: t }, t));
    } catch (e) { /* the table still loads for every tenant */ }
  }
  for (const th of document.querySelectorAll('#ep-table th[data-key]')) {
    th.querySelector('button').addEventListener('click', () => {
      if (sortKey === th.dataset.key) sortDir = -sortDir; else { sortKey = th.dataset.key; sortDir = 1; }
      if (data) renderTable();
    });
  }
  $('controls').addEventListener('submit', (ev) => { ev.preventDefault(); refresh(); });
  $('c-window').addEventListener('change', refresh);
  $('c-tenant').addEventListener('change', refresh);
  $('c-filter').addEventListener('input', () => data && renderTable());
  $('c-state').addEventListener('change', () => data && renderTable());
  $('c-auto').addEventListener('change', schedule);
  $('c-refresh').addEventListener('click', refresh);
  $('chart-all').addEventListener('click', () => { chartEndpoint = null; refresh(); });
  await refresh();
  schedule();
}

init();
