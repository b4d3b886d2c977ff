// Browser steps of services/hookline/tests/ui.rs: drives Debian's Chromium (headless) with
// playwright-core against a running hookline. Input: UI_SCENARIO (JSON: base URL, control URL,
// tokens, endpoints), UI_ARTIFACTS (screenshot folder), HOOKLINE_TEST_CHROMIUM,
// HOOKLINE_TEST_NODE_MODULES. Prints each step; exits non-zero on the first failure.
'use strict';
const path = require('path');
const { chromium } = require(path.join(process.env.HOOKLINE_TEST_NODE_MODULES, 'playwright-core'));

const S = JSON.parse(process.env.UI_SCENARIO);
const ART = process.env.UI_ARTIFACTS;
const TIMEOUT = 30_000; // longest wait for any one condition
const VIEWPORT = { width: 1366, height: 860 }; // a laptop screen
const README_VIEWPORT = { width: 1280, height: 760 };

function log(msg) { console.log(`[ui] ${msg}`); }
function assert(cond, msg) { if (!cond) throw new Error(`assertion failed: ${msg}`); }

// Polls `fn` until it returns a truthy value; fails with `what` after TIMEOUT.
async function until(what, fn, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function control(method, p) {
  const r = await fetch(S.control + p, { method });
  assert(r.ok, `control ${method} ${p}: ${r.status}`);
  return r.json().catch(() => ({}));
}

const received = async (name) => (await control('GET', `/receiver/${name}`)).received;
const rows = (page) => page.locator('#dlq-table tbody tr');
const rowsOf = (page, url) => rows(page).filter({ hasText: url });

async function shot(page, name) {
  await page.screenshot({ path: path.join(ART, name), fullPage: true });
  log(`screenshot ${name}`);
}

// A smaller picture for the README (docs/img/, reduced to 128 colours there to stay small).
async function readmeShot(page, name, fullPage = false) {
  await page.setViewportSize(README_VIEWPORT);
  await page.screenshot({ path: path.join(ART, name), fullPage });
  await page.setViewportSize(VIEWPORT);
  log(`screenshot ${name}`);
}

async function signIn(page, token) {
  await page.goto(S.base + '/ui/login');
  await page.fill('#token', token);
  await page.press('#token', 'Enter');
}

async function confirm(page, expectTitle) {
  const dlg = page.locator('#confirm');
  await dlg.waitFor({ state: 'visible' });
  const title = await page.textContent('#confirm-title');
  assert(title.includes(expectTitle), `confirmation asks "${expectTitle}" (got "${title}")`);
  await page.click('#confirm-ok');
  await dlg.waitFor({ state: 'hidden' });
}

async function dlqSteps(page) {
  log('signed-out access is refused');
  await page.goto(S.base + '/ui/dlq');
  assert(page.url().startsWith(S.base + '/ui/login'), `signed out, /ui/dlq leads to sign-in (at ${page.url()})`);
  const anon = await page.request.get(S.base + '/api/webhooks/dlq?tenant_id=acme');
  assert(anon.status() === 401, `the API refuses a signed-out browser (${anon.status()})`);

  log('a wrong token is refused with a message');
  await signIn(page, 'not-a-token');
  await page.locator('#login-error').waitFor();
  assert((await page.textContent('#login-error')).includes('not valid'), 'the error says the token is not valid');

  log('sign in');
  await signIn(page, S.admin_token);
  await page.waitForURL(S.base + '/ui/dlq');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'hookline_session');
  assert(session && session.httpOnly && session.sameSite === 'Strict', `HttpOnly, SameSite=Strict session cookie: ${JSON.stringify(session)}`);
  assert(!page.url().includes(S.admin_token) && !session.value.includes(S.admin_token), 'the token is in no URL or cookie');

  log("the failing endpoint's messages appear");
  await until('five DLQ rows', async () => (await rows(page).count()) === 5);
  assert((await rowsOf(page, S.orders.url).count()) === 3, 'three entries of the orders endpoint');
  assert((await rowsOf(page, S.billing.url).count()) === 2, 'two entries of the billing endpoint');
  assert((await rowsOf(page, S.orders.url).first().textContent()).includes('500'), 'the last error shows the 500');
  await shot(page, 'dlq-list.png');

  log('open an entry with the keyboard: payload, headers, every attempt');
  const first = rowsOf(page, S.orders.url).first();
  const entryId = await first.getAttribute('data-id');
  await first.locator('button.link').focus();
  await page.keyboard.press('Enter');
  await until('detail heading', async () => (await page.textContent('#detail-h')).includes(entryId));
  await until('three attempts', async () => (await page.locator('#detail-attempts tbody tr').count()) === 3);
  const attempts = await page.locator('#detail-attempts tbody tr').allTextContents();
  assert(attempts.every((t) => t.includes('failed') && t.includes('500')), `every attempt failed with 500: ${attempts}`);
  const payload = await page.textContent('#detail-payload');
  assert(/\n  "order_id": \d/.test(payload) && payload.includes('"sku": "A-1"'), `payload pretty-printed: ${payload}`);
  const headers = await page.locator('#detail-headers tbody').textContent();
  assert(headers.includes('webhook-id') && headers.includes('webhook-signature') && headers.includes('content-type'), `headers shown: ${headers}`);
  assert(await page.isVisible('#detail-replay') && await page.isVisible('#detail-discard'), 'replay and discard offered');
  await shot(page, 'dlq-detail.png');
  await readmeShot(page, 'readme-dlq.png');

  log('fix the endpoint, replay, the entry leaves the list');
  await control('POST', '/receiver/orders/status/200');
  const before = await received('orders');
  await page.click('#detail-replay');
  await confirm(page, 'Replay this entry?');
  await until('replayed entry leaves the list', async () => (await page.locator(`#dlq-table tr[data-id="${entryId}"]`).count()) === 0);
  assert((await page.textContent('#status')).includes(`Replayed entry ${entryId}`), 'the outcome is announced');
  assert(await page.isHidden('#detail'), 'the detail of a handled entry closes');
  await until('the replay reaches the fixed endpoint', async () => (await received('orders')) > before);
  assert((await rows(page).count()) === 4, 'four entries left, without a reload');

  log('discard another (cancel first, then confirm)');
  const second = rowsOf(page, S.orders.url).first();
  const secondId = await second.getAttribute('data-id');
  await second.getByRole('button', { name: `Discard entry ${secondId}` }).click();
  await page.locator('#confirm').waitFor({ state: 'visible' });
  await page.keyboard.press('Escape');
  await page.locator('#confirm').waitFor({ state: 'hidden' });
  assert((await page.locator(`#dlq-table tr[data-id="${secondId}"]`).count()) === 1, 'cancel keeps the entry');
  await second.getByRole('button', { name: `Discard entry ${secondId}` }).click();
  await confirm(page, 'Discard this entry?');
  await until('discarded entry leaves the list', async () => (await page.locator(`#dlq-table tr[data-id="${secondId}"]`).count()) === 0);
  assert((await page.textContent('#status')).includes(`Discarded entry ${secondId}`), 'the discard is announced');

  log('bulk replay of a filtered set, with progress');
  await control('POST', '/receiver/billing/status/200');
  const billingBefore = await received('billing');
  await page.selectOption('#f-endpoint', S.billing.id);
  await page.click('#filters button[type=submit]');
  await until('two billing rows', async () => (await rows(page).count()) === 2 && (await rowsOf(page, S.billing.url).count()) === 2);
  await page.click('#bulk-replay');
  await confirm(page, 'Replay every matching entry?');
  await until('bulk progress finished', async () => (await page.textContent('#bulk-text')).includes('Finished: 2 replayed'));
  await until('the filtered list empties', async () => (await rows(page).count()) === 0 && (await page.isVisible('#empty')));
  assert((await page.textContent('#empty')).includes('No open DLQ entries match'), 'the empty state says what to do');
  await until('bulk replays reach the endpoint', async () => (await received('billing')) >= billingBefore + 2);
  await page.click('#reset');
  await until('one entry left overall', async () => (await rows(page).count()) === 1);

  log('search by part of an id');
  const lastId = await rows(page).first().getAttribute('data-id');
  await page.fill('#f-q', lastId.slice(-8));
  await page.press('#f-q', 'Enter');
  await until('the entry is found', async () => (await page.textContent('#page-no')) === 'Search results' && (await page.locator(`#dlq-table tr[data-id="${lastId}"]`).count()) === 1);
  await page.fill('#f-q', 'no-such-id');
  await page.press('#f-q', 'Enter');
  await until('nothing found, and it says so', async () => (await page.isVisible('#empty')) && (await page.textContent('#empty')).includes('contains “no-such-id”'));
  await page.click('#reset');
  await until('the list again', async () => (await rows(page).count()) === 1);

  log('a cookie session cannot change state without the CSRF header');
  const statuses = await page.evaluate(async () => {
    const bare = await fetch('/api/webhooks/dlq/unknown/replay', { method: 'POST' });
    const marked = await fetch('/api/webhooks/dlq/unknown/replay', { method: 'POST', headers: { 'x-hookline-csrf': '1' } });
    return [bare.status, marked.status];
  });
  assert(statuses[0] === 403 && statuses[1] === 404, `403 without the header, 404 (authenticated) with it: ${statuses}`);
}

async function dashboardSteps(page) {
  log('dashboard: failure spike and circuit state');
  await page.getByRole('link', { name: 'Health dashboard' }).click();
  await page.waitForURL(S.base + '/ui/health');
  const tr = (id) => page.locator(`#ep-table tbody tr[data-id="${id}"]`);
  await until('endpoint rows', async () => (await page.locator('#ep-table tbody tr').count()) === 4);
  await until('orders circuit open', async () => (await tr(S.orders.id).locator('td.circuit').textContent()).includes('open'));
  assert((await tr(S.orders.id).textContent()).includes('0.0 %'), 'the failing endpoint shows a 0 % success rate');
  assert((await tr(S.ok.id).textContent()).includes('100.0 %'), 'the healthy endpoint shows 100 %');
  assert((await tr(S.ok.id).locator('td.circuit').textContent()).includes('closed'), 'the healthy circuit is closed');
  const failedTotal = async () => {
    const label = await page.getAttribute('#chart-outcomes svg', 'aria-label');
    const m = /(\d+) attempts failed/.exec(label || '');
    return m ? Number(m[1]) : -1;
  };
  await until('failure spike charted for all endpoints', async () => (await failedTotal()) >= 15);
  assert((await page.locator('#chart-outcomes svg rect.failed').count()) > 0, 'failed bars drawn');
  assert((await page.locator('#chart-outcomes svg rect.succeeded').count()) > 0, 'succeeded bars drawn');
  assert((await page.locator('#chart-latency svg polyline, #chart-latency svg circle').count()) > 0, 'latency drawn');

  log('sort by DLQ depth');
  const dlqHeader = page.locator('#ep-table th[data-key="dlq_depth"]');
  await dlqHeader.locator('button').click();
  assert((await dlqHeader.getAttribute('aria-sort')) === 'ascending', 'ascending first');
  await dlqHeader.locator('button').click();
  assert((await dlqHeader.getAttribute('aria-sort')) === 'descending', 'then descending');
  const firstId = await page.locator('#ep-table tbody tr').first().getAttribute('data-id');
  assert(firstId === S.orders.id, 'the endpoint with DLQ entries sorts first');
  assert((await tr(S.orders.id).locator('td').nth(8).textContent()).trim() === '1', 'one open DLQ entry left for orders');

  log('filter');
  await page.fill('#c-filter', 'billing');
  await until('one row', async () => (await page.locator('#ep-table tbody tr').count()) === 1);
  await page.fill('#c-filter', '');
  await page.selectOption('#c-state', 'circuit');
  await until('only the open circuit', async () => (await page.locator('#ep-table tbody tr').count()) === 1 && (await tr(S.orders.id).count()) === 1);
  await page.selectOption('#c-state', '');

  log('chart one endpoint');
  await tr(S.orders.id).getByRole('button', { name: /^Chart / }).click();
  await until('charts for orders', async () => (await page.textContent('#charts-h')).includes(S.orders.url));
  await until('nine failures of orders charted', async () => (await failedTotal()) === 9);
  await page.click('#chart-all');
  await until('charts for all again', async () => (await page.textContent('#charts-h')) === 'All endpoints');

  log('consumer and projector lag');
  await until('lag tables', async () => {
    const t = await page.textContent('#lag');
    return t.includes('Consumer lag') && t.includes('Projector lag') && t.includes('dispatcher');
  });
  await until('auto-refresh stamp', async () => (await page.textContent('#updated')).startsWith('Updated'));
  await shot(page, 'health.png');
  await readmeShot(page, 'readme-health.png', true);

  log('sign out; the pages and the API refuse the browser again');
  await page.click('.signout button');
  await page.waitForURL(/\/ui\/login$/);
  await page.goto(S.base + '/ui/health');
  assert(page.url().startsWith(S.base + '/ui/login'), `signed out, /ui/health leads to sign-in (at ${page.url()})`);
  const anon = await page.request.get(S.base + '/api/overview');
  assert(anon.status() === 401, `the API refuses a signed-out browser (${anon.status()})`);
}

async function tenantSteps(page) {
  log("a tenant token sees only its tenant's data");
  await signIn(page, S.tenant_token);
  await page.waitForURL(S.base + '/ui/dlq');
  assert(await page.isHidden('#tenant-field'), 'no tenant choice for a tenant token');
  await page.locator('#empty').waitFor({ state: 'visible' });
  assert((await page.textContent('#empty')).includes('No open DLQ entries'), 'the tenant has an empty DLQ');
  await page.goto(S.base + '/ui/health');
  await until('one endpoint of its own', async () => (await page.locator('#ep-table tbody tr').count()) === 1);
  assert((await page.locator(`#ep-table tbody tr[data-id="${S.orders.id}"]`).count()) === 0, "another tenant's endpoint is not shown");
  await until('lag hidden', async () => (await page.textContent('#lag')).includes('admin token'));
}

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.HOOKLINE_TEST_CHROMIUM,
    headless: true,
    // Root in CI: Chromium's sandbox needs user namespaces it may not have.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext({ viewport: VIEWPORT });
    context.setDefaultTimeout(TIMEOUT);
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error' && !/401|403|404/.test(m.text())) problems.push(`console: ${m.text()}`); });
    try {
      await dlqSteps(page);
      await dashboardSteps(page);
    } catch (e) {
      await shot(page, 'failure.png').catch(() => {});
      throw e;
    }
    assert(problems.length === 0, `no script errors: ${problems.join('; ')}`);
    const tenant = await browser.newContext({ viewport: VIEWPORT });
    tenant.setDefaultTimeout(TIMEOUT);
    const tpage = await tenant.newPage();
    try {
      await tenantSteps(tpage);
    } catch (e) {
      await shot(tpage, 'failure-tenant.png').catch(() => {});
      throw e;
    }
    log('ALL STEPS PASSED');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(`[ui] FAILED: ${e.stack || e}`);
  process.exit(1);
});
