// Browser test of the dashboard: the real tickerd binary (TICKERD_BIN) on a
// free port with the simulated feed, a real redis-server on another, and
// Debian's chromium driven by playwright-core.
//
//   TICKERD_BIN=build/tickerd BUILD_DIR=build node --test test/browser/
//
// Screenshots land in $BUILD_DIR/dashboard.png and dashboard-phone.png.
// Skipped (with a message) only when /usr/bin/chromium does not exist.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BUILD_DIR = path.resolve(process.env.BUILD_DIR || path.join(ROOT, 'build'));
const TICKERD_BIN = path.resolve(process.env.TICKERD_BIN || path.join(BUILD_DIR, 'tickerd'));
const WEB_ROOT = path.join(BUILD_DIR, 'web');
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const STARTUP_MS = 10000;   // a process that is not answering by then is broken
const WAIT_MS = 10000;      // upper bound for any one thing the page must show

const skip = fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} not found: install Debian's chromium to run the browser test`;

// Every child we start, so they die with us even when a test throws.
const children = new Set();
function killAll() { for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ } }
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { killAll(); process.exit(128 + os.constants.signals[sig]); });

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Starts a child, keeps the tail of its output for failure messages.
function start(cmd, args, name) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.name = name;
  child.output = '';
  const keep = (d) => { child.output = (child.output + d).slice(-16384); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.exited = new Promise((resolve) => child.on('exit', (code, sig) => {
    children.delete(child);
    child.exitStatus = sig || code;
    resolve();
  }));
  child.on('error', (err) => { child.output += `\nspawn error: ${err.message}`; });
  return child;
}

async function stop(child) {
  if (!child || child.exitStatus !== undefined) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await child.exited;
  clearTimeout(t);
}

// Polls `probe` until it returns true; fails with the child's output if the
// child exits first or the deadline passes.
async function waitUntil(probe, child, what) {
  const deadline = Date.now() + STARTUP_MS;
  while (Date.now() < deadline) {
    if (child.exitStatus !== undefined) {
      assert.fail(`${child.name} exited (${child.exitStatus}) before ${what}:\n${child.output}`);
    }
    if (await probe().catch(() => false)) return;
    await sleep(50);
  }
  assert.fail(`${child.name}: no ${what} within ${STARTUP_MS} ms:\n${child.output}`);
}

function redisPing(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.setTimeout(500, () => { s.destroy(); resolve(false); });
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => { got += d; if (got.includes('\r\n')) { s.end(); resolve(got.startsWith('+PONG')); } });
  });
}

// PUBLISH as another producer would (redis-cli): resolves the receivers.
function redisPublish(port, channel, message) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const arg = (a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    let got = '';
    s.setTimeout(2000, () => { s.destroy(); reject(new Error('PUBLISH got no answer')); });
    s.on('error', reject);
    s.on('connect', () => s.write(`*3\r\n${arg('PUBLISH')}${arg(channel)}${arg(message)}`));
    s.on('data', (d) => { got += d; if (got.includes('\r\n')) { s.end(); resolve(Number(got.slice(1))); } });
  });
}

async function startRedis(port, dir) {
  const r = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
                                   '--appendonly', 'no', '--dir', dir], 'redis-server');
  await waitUntil(() => redisPing(port), r, 'PONG');
  return r;
}

async function startTickerd(port, redisPort) {
  const t = start(TICKERD_BIN, ['--host', '127.0.0.1', '--port', String(port), '--web-root', WEB_ROOT,
                                '--feed', 'sim', '--sim-rate', '200', '--task-phases-ms', '200,200',
                                '--task-error-rate', '0', '--redis-url', `redis://127.0.0.1:${redisPort}`,
                                '--log-file', '-'], 'tickerd');
  await waitUntil(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, t, 'answer on /healthz');
  return t;
}

function isLocal(url) {
  const u = new URL(url);
  if (u.protocol === 'data:' || u.protocol === 'blob:' || u.protocol === 'about:') return true;
  return LOCAL_HOSTS.has(u.hostname) || LOCAL_HOSTS.has(`[${u.hostname}]`);
}

describe('dashboard in chromium', { skip }, () => {
  let chromium, browser, context, page, tmp, redis, tickerd, redisPort, port, base;
  const consoleErrors = [];
  const outside = [];
  const sentFrames = [];
  const tradesReceived = [];   // "trade" messages the server sent the page, in order

  before(async () => {
    assert.ok(fs.existsSync(TICKERD_BIN), `TICKERD_BIN ${TICKERD_BIN} does not exist: run make first`);
    assert.ok(fs.existsSync(path.join(WEB_ROOT, 'index.html')),
              `${WEB_ROOT}/index.html is missing: run make (web/build.sh ${WEB_ROOT})`);
    ({ chromium } = await import('playwright-core'));
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tickerd-browser-'));
    redisPort = await freePort();
    redis = await startRedis(redisPort, tmp);
    port = await freePort();
    tickerd = await startTickerd(port, redisPort);
    base = `http://127.0.0.1:${port}`;

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
             '--disable-component-update', '--no-first-run', '--disable-sync'],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // Every request goes through here: anything not for this machine is
    // recorded and refused, so the page cannot quietly depend on a CDN.
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (isLocal(url)) return route.continue();
      outside.push(url);
      return route.abort('blockedbyclient');
    });
    page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
    page.on('request', (r) => { if (!isLocal(r.url())) outside.push(r.url()); });
    page.on('websocket', (ws) => {
      if (!isLocal(ws.url())) outside.push(ws.url());
      ws.on('framesent', (f) => sentFrames.push(typeof f.payload === 'string' ? f.payload : String(f.payload)));
      ws.on('framereceived', (f) => {
        try {
          const m = JSON.parse(typeof f.payload === 'string' ? f.payload : String(f.payload));
          if (m.type === 'trade') tradesReceived.push(m);
        } catch { /* not ours to judge here */ }
      });
    });
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    // Every child still running, including one whose start failed midway.
    await Promise.all([...children].map(stop));
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('loads from tickerd, goes live, no console error, nothing fetched from elsewhere', async () => {
    const res = await page.goto(`${base}/dashboard#symbols=MSFT`);
    assert.equal(res.status(), 200);
    assert.equal(await page.title(), 'tickerd dashboard');
    await page.waitForSelector('#conn[data-conn="live"]', { timeout: WAIT_MS });
    // The vendored chart library loaded from tickerd, not from a CDN.
    assert.equal(await page.evaluate(() => typeof window.uPlot), 'function');
    await page.waitForSelector('.chart-card[data-symbol="MSFT"] canvas', { timeout: WAIT_MS });
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual(outside, []);
  });

  test('adding AAPL with the keyboard subscribes it and its chart gains points', async () => {
    await page.focus('#symbol-input');
    await page.keyboard.type('aapl');
    await page.keyboard.press('Enter');
    const card = '.chart-card[data-symbol="AAPL"]';
    await page.waitForSelector(card, { timeout: WAIT_MS });
    // History first, then live quotes: the count grows from 0 and the last
    // stream position keeps moving.
    await page.waitForFunction((sel) => Number(document.querySelector(sel).dataset.points) > 0,
                               card, { timeout: WAIT_MS });
    const first = await page.getAttribute(card, 'data-last-id');
    assert.match(first, /^AAPL:[0-9a-f]{16}:\d+$/);
    await page.waitForFunction(([sel, id]) => document.querySelector(sel).dataset.lastId !== id,
                               [card, first], { timeout: WAIT_MS });
    const points = Number(await page.getAttribute(card, 'data-points'));
    assert.ok(points > 0 && points <= 300, `AAPL chart holds ${points} points`);
    // The quote table has a live AAPL row with prices.
    const bid = await page.textContent('#quote-rows tr[data-symbol="AAPL"] [data-field="bid"]');
    assert.match(bid, /^\d+\.\d+$/);
    // The watchlist is in the URL and survives a reload via localStorage.
    assert.match(new URL(page.url()).hash, /^#symbols=MSFT,AAPL$/);
    assert.equal(await page.evaluate(() => localStorage.getItem('tickerd.symbols')), 'MSFT,AAPL');
    // The subscribe went out over /ws with history, as the protocol says
    // (it was sent before the chart filled, so it has been reported).
    const subs = sentFrames.map((f) => JSON.parse(f)).filter((m) => m.action === 'subscribe' && m.symbols);
    assert.ok(subs.some((m) => m.symbols.includes('AAPL') && m.history === 300), JSON.stringify(subs));
  });

  test('bad symbols are refused with a message; remove buttons work from the keyboard', async () => {
    await page.fill('#symbol-input', 'NOT A SYMBOL');
    await page.press('#symbol-input', 'Enter');
    assert.equal(await page.getAttribute('#symbol-input', 'aria-invalid'), 'true');
    assert.match(await page.textContent('#symbol-error'), /not a symbol/);
    await page.fill('#symbol-input', 'GOOGL');
    await page.press('#symbol-input', 'Enter');
    await page.waitForSelector('.chart-card[data-symbol="GOOGL"]', { timeout: WAIT_MS });
    await page.focus('button[aria-label="Remove GOOGL"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('.chart-card[data-symbol="GOOGL"]', { state: 'detached', timeout: WAIT_MS });
    assert.equal(await page.$('#quote-rows tr[data-symbol="GOOGL"]'), null);
    assert.match(new URL(page.url()).hash, /^#symbols=MSFT,AAPL$/);
  });

  test('a task started from the button reaches completed in the tasks list', async () => {
    const [res] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/hello', { timeout: WAIT_MS }),
      page.click('#start-task'),
    ]);
    assert.equal(res.status(), 200);
    const body = await res.json();
    assert.ok(body.task_id != null, `GET /hello answered ${JSON.stringify(body)}`);
    const item = `#task-list li[data-task-id=${JSON.stringify(String(body.task_id))}]`;
    await page.waitForSelector(`${item}[data-state="completed"]`, { timeout: WAIT_MS });
    assert.match(await page.textContent(item), /completed/);
  });

  test('the status panel shows figures from GET /status', async () => {
    await page.waitForSelector('#status-list .stat', { timeout: WAIT_MS });
    const status = await (await fetch(`${base}/status`)).json();
    const numeric = Object.keys(status).filter((k) => typeof status[k] === 'number');
    assert.ok(numeric.length > 0, `GET /status has no top-level number: ${JSON.stringify(status)}`);
    for (const k of numeric) {
      await page.waitForSelector(`#status-list .stat[data-key=${JSON.stringify(k)}] dd`, { timeout: WAIT_MS });
    }
  });

  // ---- candles (issue 17) ----

  // What the chart of `sym` last drew (the plugin records it), and its timeframe.
  const drawnOf = (sym) => page.evaluate((s) => {
    const r = window.tickerdCandles.state().charts.get(s);
    return r ? { tf: window.tickerdCandles.state().tf, drawn: r.drawn, draws: r.draws } : null;
  }, sym);

  test('the timeframe selector switches the candle charts and their subscription', async () => {
    await page.waitForSelector('.candle-card[data-symbol="MSFT"] canvas', { timeout: WAIT_MS });
    assert.equal(await page.inputValue('#candle-tf'), '5s');
    // keyboard: the selector is a native <select>, reached and changed without a mouse
    await page.focus('#candle-tf');
    await page.selectOption('#candle-tf', '1m');
    await page.waitForSelector('.candle-card[data-symbol="MSFT"][data-tf="1m"]', { timeout: WAIT_MS });
    await page.waitForFunction(() => {
      const r = window.tickerdCandles.state().charts.get('MSFT');
      return r.drawn.length > 0 && r.drawn.every((c) => c.t % 60 === 0);
    }, null, { timeout: WAIT_MS });
    await page.selectOption('#candle-tf', '1s');
    await page.waitForSelector('.candle-card[data-symbol="MSFT"][data-tf="1s"]', { timeout: WAIT_MS });
    const sent = sentFrames.map((f) => { try { return JSON.parse(f); } catch { return {}; } });
    assert.ok(sent.some((m) => m.action === 'unsubscribe' && m.candles && m.candles.tf === '1m'), 'no unsubscribe of 1m');
    assert.ok(sent.some((m) => m.action === 'subscribe' && m.candles && m.candles.tf === '1s' &&
                               m.candles.symbols.includes('MSFT')), 'no subscribe of 1s');
  });

  test('the drawn candles match GET /candles for the same window', async () => {
    await page.waitForFunction(() => window.tickerdCandles.state().charts.get('MSFT').drawn.filter((c) => c.closed).length >= 3,
                               null, { timeout: WAIT_MS });
    const { tf, drawn } = await drawnOf('MSFT');
    assert.equal(tf, '1s');
    const body = await (await fetch(`${base}/candles/MSFT?tf=1s&limit=300`)).json();
    const served = new Map(body.bars.map((b) => [Date.parse(b.t) / 1000, b]));
    const closed = drawn.filter((c) => c.closed);
    const lo = closed[0].t, hi = closed[closed.length - 1].t;
    // every closed bar the server has in that window is drawn, with its values
    const window_ = body.bars.filter((b) => b.closed && Date.parse(b.t) / 1000 >= lo && Date.parse(b.t) / 1000 <= hi);
    assert.deepEqual(closed.map((c) => c.t), window_.map((b) => Date.parse(b.t) / 1000));
    for (const c of closed) {
      const b = served.get(c.t);
      assert.deepEqual([c.o, c.h, c.l, c.c, c.v], [b.o, b.h, b.l, b.c, b.v], `bar at ${c.t}`);
      // drawn as a candle: the wick spans the body, higher prices higher up
      assert.ok(c.yh <= Math.min(c.yo, c.yc) && Math.max(c.yo, c.yc) <= c.yl, `geometry at ${c.t}`);
      assert.equal(c.rising, c.c >= c.o);
    }
  });

  test('the live bar moves in place', async () => {
    const before = await drawnOf('MSFT');
    const last = before.drawn[before.drawn.length - 1];
    await page.waitForFunction((b) => {
      const d = window.tickerdCandles.state().charts.get('MSFT').drawn;
      const now = d[d.length - 1];
      return now && (now.t !== b.t || now.c !== b.c || now.v !== b.v);
    }, last, { timeout: WAIT_MS });
  });

  test('the trade tape shows the trades the server streamed, newest first, with the spread', async () => {
    // keyboard: the tape's symbol is a native <select>
    await page.focus('#tape-symbol');
    await page.selectOption('#tape-symbol', 'AAPL');
    for (let t = Date.now(); Date.now() - t < WAIT_MS; await sleep(50))
      if (sentFrames.some((f) => { try { const m = JSON.parse(f); return m.action === 'subscribe' && m.trades && m.trades.includes('AAPL'); } catch { return false; } })) break;
    // a trade whose size the simulator never makes (1-99, or round lots to 500)
    const bid = Number(await page.textContent('#quote-rows tr[data-symbol="AAPL"] [data-field="bid"]'));
    for (let t = Date.now(); Date.now() - t < WAIT_MS; await sleep(50))
      if ((await (await fetch(`${base}/status`)).json()).candles.stream_channels >= 2) break;
    const res = await fetch(`${base}/quotes`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ T: 't', S: 'AAPL', i: 4321, x: 'V', p: bid, s: 4321, c: ['@'], z: 'C',
                             t: new Date().toISOString() }),
    });
    assert.equal(res.status, 202);
    const rowsOf = () => page.evaluate(() => [...document.querySelectorAll('#tape-rows tr')]
      .map((tr) => [...tr.cells].map((c) => c.textContent)));
    await page.waitForFunction(() => [...document.querySelectorAll('#tape-rows tr')].some((tr) => tr.cells[2].textContent === '4321'),
                               null, { timeout: WAIT_MS });
    const rows = await rowsOf();
    const max = await page.evaluate(() => window.tickerdTape.state().max);
    assert.ok(rows.length <= max, `${rows.length} rows on a tape of ${max}`);
    // From the posted trade down, the rows are the AAPL trades the server
    // streamed before it, newest first, with their prices and sizes.
    const k = rows.findIndex((r) => r[2] === '4321');
    const streamed = tradesReceived.filter((m) => m.symbol === 'AAPL').map((m) => m.data);
    const j = streamed.findIndex((d) => d.s === 4321 && d.i === 4321);
    assert.ok(j >= 0, 'the posted trade never came over the WebSocket');
    const older = rows.slice(k);
    assert.ok(older.length >= 1);
    for (let n = 0; n < older.length && j - n >= 0; n++) {
      const d = streamed[j - n];
      assert.deepEqual([older[n][1], older[n][2]], [d.p.toFixed(2), String(d.s)], `row ${k + n}`);
      // the tick is written, not only coloured
      if (n + 1 < older.length && j - n - 1 >= 0) {
        const prev = streamed[j - n - 1].p;
        assert.equal(older[n][3], d.p > prev ? '▲ up' : d.p < prev ? '▼ down' : '= same', `tick of row ${k + n}`);
      }
    }
    // the spread of the symbol on the tape, from its quotes
    await page.waitForFunction(() => /^\d+\.\d+$/.test(document.getElementById('tape-spread').textContent), null,
                               { timeout: WAIT_MS });
    // read together: a quote may land between separate reads
    const [b, a, sp] = await page.evaluate(() => ['tape-bid', 'tape-ask', 'tape-spread']
      .map((id) => document.getElementById(id).textContent));
    assert.ok(Math.abs(Number(a) - Number(b) - Number(sp)) < 0.011, `bid ${b} ask ${a} spread ${sp}`);
  });

  test('the lookup panel shows GET /quotes/{symbol} and its latency', async () => {
    await page.focus('#lookup-input');
    await page.keyboard.type('msft');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => /HTTP 200 in [0-9.]+ ms/.test(document.getElementById('lookup-meta').textContent),
                               null, { timeout: WAIT_MS });
    const answer = JSON.parse(await page.textContent('#lookup-answer'));
    assert.equal(answer.S, 'MSFT');
    assert.equal(answer.T, 'q');
    // (a 404 is shown the same way; not asked here, as chromium logs every
    // 4xx fetch as a console error, which the session check forbids)
  });

  test('the browser\'s own WebSocket and EventSource: permessage-deflate, interval_ms and a "*" pattern', async () => {
    // Issue 16's additions as a page script uses them, not through the
    // dashboard: Chromium offers permessage-deflate by itself.
    const status = async () => (await (await fetch(`${base}/status`)).json()).streaming;
    const before = await status();
    const WINDOW_MS = 3000, INTERVAL_MS = 500;
    const got = await page.evaluate(async ([ws_url, sse_url, windowMs, intervalMs]) => {
      const ws = new WebSocket(ws_url);
      await new Promise((ok, bad) => { ws.onopen = ok; ws.onerror = () => bad(new Error('ws error')); });
      const wsQuotes = [], sseQuotes = [];
      ws.onmessage = (e) => { const m = JSON.parse(e.data); if (m.type === 'quote') wsQuotes.push(m.symbol); };
      ws.send(JSON.stringify({ action: 'subscribe', symbols: ['*'], interval_ms: intervalMs }));
      const es = new EventSource(sse_url);
      es.addEventListener('quote', (e) => sseQuotes.push(JSON.parse(e.data).S));
      await new Promise((ok) => setTimeout(ok, windowMs));
      ws.close();
      es.close();
      return { extensions: ws.extensions, wsQuotes, sseQuotes };
    }, [`ws://127.0.0.1:${port}/ws`, `${base}/stream?symbols=AAPL,MSFT&interval_ms=${INTERVAL_MS}`, WINDOW_MS, INTERVAL_MS]);
    assert.match(got.extensions, /^permessage-deflate/);
    const count = (list) => list.reduce((c, s) => (c[s] = (c[s] || 0) + 1, c), {});
    // At most one update per symbol per interval (+ the snapshot and one
    // tick of slack), while the sim feed sends ~50 per symbol per second.
    const most = WINDOW_MS / INTERVAL_MS + 3;
    const ws = count(got.wsQuotes), sse = count(got.sseQuotes);
    assert.ok(Object.keys(ws).length >= 3, `"*" brought ${JSON.stringify(ws)}`);
    assert.deepEqual(Object.keys(sse).sort(), ['AAPL', 'MSFT']);
    for (const [sym, n] of Object.entries({ ...ws })) assert.ok(n >= 2 && n <= most, `WS ${sym}: ${n} quotes`);
    for (const [sym, n] of Object.entries(sse)) assert.ok(n >= 2 && n <= most, `SSE ${sym}: ${n} quotes`);
    const after = await status();
    assert.ok(after.rate.skipped_sse > before.rate.skipped_sse, 'SSE updates counted as throttled');
    assert.ok(after.ws_deflate.offers_accepted > before.ws_deflate.offers_accepted, 'the deflate offer accepted');
    assert.ok(after.ws_deflate.sent_compressed > before.ws_deflate.sent_compressed, 'compressed frames sent');
    assert.ok(after.pattern_deliveries > before.pattern_deliveries, 'deliveries through the pattern');
  });

  test('desktop screenshot', async () => {
    await page.waitForTimeout(300);   // let the last flashes fade for a readable picture
    await page.screenshot({ path: path.join(BUILD_DIR, 'dashboard.png'), fullPage: true });
    assert.ok(fs.statSync(path.join(BUILD_DIR, 'dashboard.png')).size > 0);
  });

  test('usable on a 375 px wide phone: no horizontal overflow, controls on screen', async () => {
    await page.setViewportSize({ width: 375, height: 812 });
    // Charts follow their container: wait until every one fits.
    await page.waitForFunction(() => [...document.querySelectorAll('.chart-card canvas, .candle-card canvas')]
      .every((c) => c.getBoundingClientRect().right <= window.innerWidth), null, { timeout: WAIT_MS });
    const overflow = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
    }));
    assert.ok(overflow.scroll <= overflow.client, `page is ${overflow.scroll} px wide in a ${overflow.client} px viewport`);
    for (const sel of ['#symbol-input', '#add-form button[type="submit"]', '#start-task', 'button[aria-label="Remove AAPL"]',
                       '#candle-tf', '#tape-symbol', '#lookup-input']) {
      const box = await page.locator(sel).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 375, `${sel} is off screen: ${JSON.stringify(box)}`);
    }
    await page.screenshot({ path: path.join(BUILD_DIR, 'dashboard-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test('a browser asking for / gets the dashboard too', async () => {
    const p2 = await context.newPage();
    p2.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(`console (/): ${m.text()}`); });
    p2.on('pageerror', (e) => consoleErrors.push(`pageerror (/): ${e.message}`));
    try {
      const res = await p2.goto(`${base}/`);
      assert.equal(res.status(), 200);
      assert.equal(await p2.title(), 'tickerd dashboard');
      await p2.waitForSelector('#conn[data-conn="live"]', { timeout: WAIT_MS });
    } finally {
      await p2.close();
    }
  });

  test('no console error and no request off this machine during the session', () => {
    assert.deepEqual(consoleErrors, []);
    assert.deepEqual(outside, []);
  });

  // Last, because the outage makes chromium log failed connections.
  test('another producer\'s quote is shown but does not move the resume point', async () => {
    await page.fill('#symbol-input', 'EXTP');
    await page.press('#symbol-input', 'Enter');
    const card = '.chart-card[data-symbol="EXTP"]';
    await page.waitForSelector(card, { timeout: WAIT_MS });
    // MSFT, AAPL and now EXTP: its channel is subscribed in Redis
    for (let t = Date.now(); Date.now() - t < WAIT_MS; await sleep(50))
      if ((await (await fetch(`${base}/status`)).json()).streaming.channels === 3) break;
    const now = Date.now();
    const res = await fetch(`${base}/quotes`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ T: 'q', S: 'EXTP', bx: 'V', bp: 7.1, bs: 3, ax: 'V', ap: 7.3, as: 1, c: ['R'], z: 'C',
                             t: new Date(now).toISOString() }),
    });
    assert.equal(res.status, 202);
    await page.waitForFunction((sel) => /^EXTP:[0-9a-f]{16}:1$/.test(document.querySelector(sel).dataset.lastId || ''),
                               card, { timeout: WAIT_MS });
    const positioned = await page.getAttribute(card, 'data-last-id');
    const foreign = JSON.stringify({ T: 'q', S: 'EXTP', bp: 7.25, ap: 7.5, t: new Date(now + 1000).toISOString() });
    assert.equal(await redisPublish(redisPort, 'quotes:EXTP', foreign), 1);
    const bid = '#quote-rows tr[data-symbol="EXTP"] [data-field="bid"]';
    await page.waitForFunction((sel) => document.querySelector(sel).textContent === '7.25', bid, { timeout: WAIT_MS });
    assert.equal(await page.getAttribute(card, 'data-last-id'), positioned);
    await page.focus('button[aria-label="Remove EXTP"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector(card, { state: 'detached', timeout: WAIT_MS });
    assert.match(new URL(page.url()).hash, /^#symbols=MSFT,AAPL$/);
  });

  test('reconnects after a server restart and resumes with "since"', async () => {
    const card = '.chart-card[data-symbol="AAPL"]';
    const seen = await page.getAttribute(card, 'data-last-id');
    assert.ok(seen, 'AAPL never received a quote: nothing to resume from');
    const [, epoch, seq] = seen.split(':');
    await stop(tickerd);
    await page.waitForSelector('#conn[data-conn="reconnecting"]', { timeout: WAIT_MS });
    sentFrames.length = 0;
    tickerd = await startTickerd(port, redisPort);
    // Backoff is at most a few seconds after one failed attempt or two.
    await page.waitForSelector('#conn[data-conn="live"]', { timeout: 20000 });
    // Frames are reported to us asynchronously: wait for the resubscribe.
    const subscribes = () => sentFrames.map((f) => JSON.parse(f)).filter((m) => m.action === 'subscribe');
    for (let t = Date.now(); Date.now() - t < WAIT_MS && !subscribes().some((m) => m.since); ) await sleep(50);
    const subs = subscribes();
    // One resubscribe carries every symbol that had quotes, from the newest
    // position received: a quote of this run, at or after the one the AAPL
    // chart showed before the outage.
    const resumed = subs.find((m) => typeof m.since === 'string');
    assert.ok(resumed, `no resubscribe with "since": ${JSON.stringify(subs)}`);
    assert.deepEqual([...resumed.symbols].sort(), ['AAPL', 'MSFT']);
    const [sym, e2, s2] = resumed.since.split(':');
    assert.ok(['AAPL', 'MSFT'].includes(sym), resumed.since);
    // Epochs are per channel (kept in Redis): only AAPL's compares.
    if (sym === 'AAPL') {
      assert.equal(e2, epoch);
      assert.ok(Number(s2) >= Number(seq), `since ${resumed.since} is older than ${seen}`);
    }
    assert.ok(subs.some((m) => m.topics && m.topics.includes('tasks')), 'tasks topic not resubscribed');
    // Quotes flow again: the channel's sequence goes on, so the position changes.
    await page.waitForFunction(([sel, id]) => {
      const c = document.querySelector(sel);
      return c.dataset.lastId !== id && Number(c.dataset.points) > 0;
    }, [card, seen], { timeout: WAIT_MS });
  });
});
