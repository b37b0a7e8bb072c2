/*
 * tickerd dashboard: one WebSocket to /ws for quotes and task events, a
 * uPlot bid/ask chart and a table row per watched symbol, GET /hello to start
 * a task, GET /status polled for the server's figures.
 *
 * Plain script, no framework, no build step: web/build.sh copies it as is.
 * Everything the server sends is written with textContent, never as HTML.
 */
'use strict';

(function () {

/* ---- Limits (why each number is what it is) ---- */

/* The symbol syntax of the wire protocol (common.md). */
const SYMBOL_RE = /^[A-Z0-9./-]{1,16}$/;
const DEFAULT_SYMBOLS = ['AAPL', 'MSFT'];
/* One chart each: past a few dozen the page is no longer readable, and the
 * server's own per-client cap (256) is far above it. */
const MAX_SYMBOLS = 32;
/* Rolling window of each chart; also what we ask the server to replay as
 * "history" on subscribe, so a chart is full the moment it appears. */
const MAX_POINTS = 300;
/* Newest tasks shown; older ones drop off the list. */
const MAX_TASKS = 20;
/* The status panel refreshes at this period; a request taking longer than
 * the timeout is abandoned so polls never pile up. */
const STATUS_INTERVAL_MS = 2000;
const STATUS_TIMEOUT_MS = 1800;
/* Fields rendered from /status at most, so a huge reply cannot flood the
 * page (tickerd reports about 80 today). */
const MAX_STATUS_FIELDS = 200;
const MAX_STATUS_STRING = 80;
/* Reconnect backoff: exponential from BASE to MAX, with jitter so that many
 * dashboards cut off by one server restart do not return in lockstep.
 * A connection that stayed up STABLE_MS resets the backoff. */
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const STABLE_MS = 5000;
/* Server notices stay on screen this long. */
const NOTICE_MS = 8000;
const CHART_HEIGHT = 180;
const STORAGE_KEY = 'tickerd.symbols';
const HASH_KEY = 'symbols';

/* Tasks only move forward: pending -> running -> a terminal state. Ranks let
 * a late or replayed event never move a task back. */
const TASK_RANK = { pending: 0, running: 1, completed: 2, failed: 2, cancelled: 2 };

const $ = (id) => document.getElementById(id);

const { el, cssVar } = window.tickerdDom;   /* dom.js */

/* ---- Watchlist: URL hash, then localStorage, then the default ---- */

const state = {
  symbols: [],            /* watch order */
  bySymbol: new Map(),    /* symbol -> per-symbol record (see newRecord) */
};

function normalizeSymbol(raw) {
  const s = String(raw == null ? '' : raw).trim().toUpperCase();
  return SYMBOL_RE.test(s) ? s : null;
}

function parseSymbolList(text) {
  const out = [];
  for (const part of String(text).split(',')) {
    const s = normalizeSymbol(part);
    if (s && !out.includes(s) && out.length < MAX_SYMBOLS) out.push(s);
  }
  return out;
}

/* Returns the list from "#symbols=A,B", or null when the hash has none. */
function symbolsFromHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  return params.has(HASH_KEY) ? parseSymbolList(params.get(HASH_KEY)) : null;
}

function loadSymbols() {
  const fromHash = symbolsFromHash();
  if (fromHash) return fromHash;
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved != null) return parseSymbolList(saved);
  } catch (e) { /* storage disabled: fall through to the default */ }
  return DEFAULT_SYMBOLS.slice();
}

function saveSymbols() {
  const list = state.symbols.join(',');
  try { localStorage.setItem(STORAGE_KEY, list); } catch (e) { /* private mode */ }
  /* An absolute path: the page's <base> would otherwise turn "#..." into
   * /dashboard/#... . replaceState does not fire hashchange. */
  const url = location.pathname + location.search + '#' + HASH_KEY + '=' + list;
  history.replaceState(null, '', url);
}

function setInputError(msg) {
  const input = $('symbol-input');
  $('symbol-error').textContent = msg || '';
  if (msg) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function addSymbol(raw) {
  const sym = normalizeSymbol(raw);
  if (!sym) {
    setInputError('“' + String(raw).trim().slice(0, 20) + '” is not a symbol: use 1–16 of A–Z, 0–9, “.”, “/”, “-”.');
    return false;
  }
  if (state.bySymbol.has(sym)) { setInputError(sym + ' is already on the watchlist.'); return false; }
  if (state.symbols.length >= MAX_SYMBOLS) { setInputError('At most ' + MAX_SYMBOLS + ' symbols.'); return false; }
  setInputError('');
  state.symbols.push(sym);
  openSymbol(sym);
  saveSymbols();
  renderChips();
  conn.subscribe([sym]);
  return true;
}

function removeSymbol(sym) {
  const i = state.symbols.indexOf(sym);
  if (i < 0) return;
  state.symbols.splice(i, 1);
  closeSymbol(sym);
  saveSymbols();
  renderChips();
  conn.unsubscribe([sym]);
}

function renderChips() {
  const ul = $('symbols');
  ul.replaceChildren();
  for (const sym of state.symbols) {
    const li = el('li', { class: 'chip', 'data-symbol': sym });
    li.append(el('span', null, sym));
    const b = el('button', { type: 'button', class: 'chip-remove', 'aria-label': 'Remove ' + sym }, '×');
    b.addEventListener('click', () => {
      const idx = state.symbols.indexOf(sym);
      removeSymbol(sym);
      /* Keep keyboard users where they were: the next chip, else the input. */
      const buttons = ul.querySelectorAll('.chip-remove');
      (buttons[Math.min(idx, buttons.length - 1)] || $('symbol-input')).focus();
    });
    li.append(b);
    ul.append(li);
  }
  if (!state.symbols.length) ul.append(el('li', { class: 'empty' }, 'No symbols: add one above.'));
}

/* Someone edited the URL by hand: make the watchlist follow it. */
function onHashChange() {
  const wanted = symbolsFromHash();
  if (!wanted) return;
  for (const sym of state.symbols.slice()) if (!wanted.includes(sym)) removeSymbol(sym);
  for (const sym of wanted) if (!state.bySymbol.has(sym)) addSymbol(sym);
}

/* ---- Per-symbol record: series, table row, chart ---- */

function newRecord(sym) {
  return {
    sym,
    t: [], bid: [], ask: [],  /* uPlot columns: x in seconds, then the two series */
    seqs: [],                 /* each point's sequence number, to merge history */
    epoch: null, seq: 0,      /* last accepted stream position */
    lastId: null,             /* "<SYMBOL>:<epoch>:<seq>" of that position */
    arrival: 0,               /* when it arrived, in the page's message order */
    quote: null, prev: null,  /* newest payload and the one before */
    dirty: false,
    row: null, cells: null, card: null, plot: null, chart: null,
  };
}

function openSymbol(sym) {
  const r = newRecord(sym);
  state.bySymbol.set(sym, r);
  makeRow(r);
  makeChart(r);
  orderViews();
  if (window.tickerdCandles) window.tickerdCandles.open(sym);
  if (window.tickerdTape) window.tickerdTape.open(sym);
}

function closeSymbol(sym) {
  const r = state.bySymbol.get(sym);
  if (!r) return;
  state.bySymbol.delete(sym);
  if (window.tickerdCandles) window.tickerdCandles.close(sym);
  if (window.tickerdTape) window.tickerdTape.close(sym);
  if (r.chart) r.chart.destroy();
  if (r.plot) resizer.unobserve(r.plot);
  r.card.remove();
  r.row.remove();
}

/* Rows and charts follow the watch order. */
function orderViews() {
  const rows = $('quote-rows');
  const charts = $('charts');
  for (const sym of state.symbols) {
    const r = state.bySymbol.get(sym);
    if (!r) continue;
    rows.append(r.row);
    charts.append(r.card);
  }
}

function resetSeries(r) {
  r.t.length = 0; r.bid.length = 0; r.ask.length = 0; r.seqs.length = 0;
  r.epoch = null; r.seq = 0;
  r.lastId = null;
  r.dirty = true;
}

/* Counts quote messages in arrival order: the newest position of all is
 * the one a reconnect resumes from. */
let arrivals = 0;

function trimFront(r) {
  const cut = r.t.length - MAX_POINTS;
  if (cut <= 0) return;
  r.t.splice(0, cut); r.bid.splice(0, cut); r.ask.splice(0, cut); r.seqs.splice(0, cut);
}

/* RFC 3339 with up to nanoseconds ("...:00.123456789Z") to seconds. Date.parse
 * only promises milliseconds, so the fraction is added separately. */
function parseTime(t) {
  const m = typeof t === 'string' && /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)$/i.exec(t);
  if (!m) return NaN;
  const whole = Date.parse(m[1] + m[3]);
  return whole / 1000 + (m[2] ? parseFloat('0' + m[2]) : 0);
}

/* A zero price means "no quote on that side" in Alpaca's schema: leave a gap. */
function priceOrNull(v) {
  const n = Number(v);
  return Number.isFinite(n) && n > 0 ? n : null;
}

/* Appends one payload; false when it is a duplicate (replay and history can
 * overlap with what was already received) or unusable. */
function ingest(r, q, id) {
  if (!q || typeof q !== 'object') return false;
  const seq = Number(q.seq);
  if (Number.isFinite(seq) && q.epoch != null && q.epoch === r.epoch && seq <= r.seq) return false;
  let t = parseTime(q.t);
  if (!Number.isFinite(t)) t = Date.now() / 1000;
  /* uPlot needs x ascending: a quote stamped earlier than the previous one
   * is drawn at the previous one's time. */
  const n = r.t.length;
  if (n && t < r.t[n - 1]) t = r.t[n - 1];
  r.t.push(t);
  r.bid.push(priceOrNull(q.bp));
  r.ask.push(priceOrNull(q.ap));
  r.seqs.push(Number.isFinite(seq) ? seq : NaN);
  trimFront(r);
  if (q.epoch != null) r.epoch = q.epoch;
  if (Number.isFinite(seq)) r.seq = seq;
  /* Another producer's quote has no position (no id, no seq/epoch): the
   * last position stays the one a reconnect resumes from. */
  const pos = id || (q.epoch != null && Number.isFinite(seq) ? r.sym + ':' + q.epoch + ':' + seq : null);
  if (pos) {
    r.lastId = pos;
    r.arrival = ++arrivals;
  }
  r.prev = r.quote;
  r.quote = q;
  r.dirty = true;
  return true;
}

/* A "history" message (oldest first). Live quotes may have arrived before
 * it (after a resubscribe, those already on the way): the part of history
 * older than what we hold goes in front, the newer part is appended, the
 * overlap is dropped. */
function mergeHistory(r, quotes) {
  const qs = quotes.filter((q) => q && typeof q === 'object');
  if (!qs.length) return;
  /* A new epoch is a restarted server: its sequence starts over. Another
   * producer's quotes have no epoch and say nothing about it. */
  const positioned = qs.filter((q) => q.epoch != null);
  const epoch = positioned.length ? positioned[positioned.length - 1].epoch : r.epoch;
  if (r.epoch != null && epoch !== r.epoch) resetSeries(r);
  const first = r.seqs.length ? r.seqs[0] : Infinity;
  const older = r.t.length ? qs.filter((q) => q.epoch === r.epoch && Number(q.seq) < first) : [];
  const room = MAX_POINTS - r.t.length;
  if (room > 0) prependOlder(r, older.slice(-room));
  for (const q of qs) ingest(r, q, null);
}

function prependOlder(r, qs) {
  if (!qs.length) return;
  const t = [], bid = [], ask = [], seqs = [];
  let next = r.t.length ? r.t[0] : Infinity;
  for (let i = qs.length - 1; i >= 0; i--) {
    let x = parseTime(qs[i].t);
    if (!Number.isFinite(x) || x > next) x = next;
    next = x;
    t.unshift(x); bid.unshift(priceOrNull(qs[i].bp)); ask.unshift(priceOrNull(qs[i].ap)); seqs.unshift(Number(qs[i].seq));
  }
  r.t.unshift(...t); r.bid.unshift(...bid); r.ask.unshift(...ask); r.seqs.unshift(...seqs);
  r.dirty = true;
}

/* ---- Rendering, batched to one pass per animation frame ---- */

let frame = 0;
function scheduleRender() {
  if (!frame) frame = requestAnimationFrame(renderDirty);
}

function renderDirty() {
  frame = 0;
  for (const r of state.bySymbol.values()) {
    if (!r.dirty) continue;
    r.dirty = false;
    if (r.chart) r.chart.setData([r.t, r.bid, r.ask]);
    r.card.setAttribute('data-points', String(r.t.length));
    if (r.lastId) r.card.setAttribute('data-last-id', r.lastId);
    r.count.textContent = r.t.length + (r.t.length === 1 ? ' point' : ' points');
    updateRow(r);
  }
}

function decimals(p) { return p != null && p < 1 ? 4 : 2; }
function fmtPrice(p) { return p == null ? '—' : p.toFixed(decimals(p)); }

/* HH:MM:SS and the milliseconds apart, so a phone can leave them out. The
 * time changes with every quote: it does not flash, it would never stop. */
function setTimeCell(cell, sec) {
  if (!Number.isFinite(sec)) { cell.textContent = '—'; return; }
  const d = new Date(sec * 1000);
  const pad = (n, w) => String(n).padStart(w || 2, '0');
  cell.replaceChildren(pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()),
                       el('span', { class: 'ms' }, '.' + pad(d.getMilliseconds(), 3)));
}

function makeRow(r) {
  const tr = el('tr', { 'data-symbol': r.sym });
  tr.append(el('th', { scope: 'row' }, r.sym));
  const cells = {};
  for (const f of ['bid', 'ask', 'sizes', 'spread', 'time']) {
    cells[f] = el('td', { class: 'num', 'data-field': f }, '—');
    tr.append(cells[f]);
  }
  cells.time.textContent = 'waiting…';
  r.row = tr;
  r.cells = cells;
}

/* Restarts the flash on a changed cell. Two identical keyframe sets with
 * different names (…-a / …-b) restart the animation by swapping the class,
 * without forcing a layout per cell. */
function setCell(cell, text, dir) {
  if (cell.textContent === text) return;
  cell.textContent = text;
  const flip = cell.dataset.flip === 'a' ? 'b' : 'a';
  cell.dataset.flip = flip;
  cell.className = dir === 'none' ? 'num' : 'num flash-' + (dir || 'chg') + '-' + flip;
}

function direction(now, before) {
  if (now == null || before == null || now === before) return 'chg';
  return now > before ? 'up' : 'down';
}

function updateRow(r) {
  const q = r.quote;
  if (!q) return;
  const bid = priceOrNull(q.bp), ask = priceOrNull(q.ap);
  const pb = r.prev ? priceOrNull(r.prev.bp) : null, pa = r.prev ? priceOrNull(r.prev.ap) : null;
  setCell(r.cells.bid, fmtPrice(bid), direction(bid, pb));
  setCell(r.cells.ask, fmtPrice(ask), direction(ask, pa));
  /* Narrow no-break spaces: the pair stays on one line and takes little room. */
  setCell(r.cells.sizes, (q.bs != null ? q.bs : '—') + '\u202f×\u202f' + (q.as != null ? q.as : '—'));
  const spread = bid != null && ask != null ? (ask - bid).toFixed(Math.max(decimals(bid), decimals(ask))) : '—';
  setCell(r.cells.spread, spread);
  setTimeCell(r.cells.time, parseTime(q.t));
}

/* ---- Charts ---- */

/* One observer for every plot: charts follow their container's width. */
const resizer = new ResizeObserver((entries) => {
  for (const e of entries) {
    const r = state.bySymbol.get(e.target.dataset.symbol);
    const w = Math.floor(e.contentRect.width);
    if (r && r.chart && w > 0 && w !== r.chart.width) r.chart.setSize({ width: w, height: CHART_HEIGHT });
  }
});

/* Heading ids come from a counter: "BRK.A" and "BRK/A" must not collide. */
let chartSeq = 0;

function makeChart(r) {
  const hid = 'chart-h-' + (++chartSeq);
  const card = el('section', { class: 'chart-card', 'data-symbol': r.sym, 'data-points': '0', 'aria-labelledby': hid });
  const head = el('div', { class: 'chart-head' });
  head.append(el('h3', { id: hid }, r.sym));
  r.count = el('span', { class: 'help' }, '0 points');
  head.append(r.count);
  const plot = el('div', { class: 'plot', 'data-symbol': r.sym, role: 'img',
                           'aria-label': r.sym + ' bid and ask over the last ' + MAX_POINTS + ' quotes; figures in the quote table' });
  card.append(head, plot);
  r.card = card;
  r.plot = plot;
  if (typeof window.uPlot !== 'function') {
    plot.textContent = 'Chart library not loaded.';
    return;
  }
  const fg = cssVar('--fg-muted', '#666'), grid = cssVar('--grid', 'rgba(128,128,128,.2)');
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const opts = {
    width: 300,            /* replaced by the container's width once attached */
    height: CHART_HEIGHT,
    scales: { x: { time: true } },
    series: [
      {},
      { label: 'Bid', stroke: cssVar('--bid', '#1a7f37'), width: 1.5, spanGaps: true,
        value: (u, v) => fmtPrice(v) },
      { label: 'Ask', stroke: cssVar('--ask', '#cf222e'), width: 1.5, spanGaps: true,
        value: (u, v) => fmtPrice(v) },
    ],
    axes: [Object.assign({}, axis), Object.assign({ size: 56 }, axis)],
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
  };
  r.chart = new window.uPlot(opts, [r.t, r.bid, r.ask], plot);
  resizer.observe(plot);
}

/* ---- Tasks ---- */

const tasks = new Map();   /* id -> { task, li }, oldest first */

function taskRank(s) { return Object.prototype.hasOwnProperty.call(TASK_RANK, s) ? TASK_RANK[s] : -1; }

function upsertTask(t, onlyKnown) {
  if (!t || typeof t !== 'object' || t.id == null) return;
  const id = String(t.id);
  let e = tasks.get(id);
  if (!e && onlyKnown) return;
  if (e) {
    const a = taskRank(e.task.state), b = taskRank(t.state);
    if (b < a) return;
    if (b === a && Number(t.phase) < Number(e.task.phase)) return;
  } else {
    e = { task: null, li: el('li', { class: 'task', 'data-task-id': id }) };
    tasks.set(id, e);
    $('task-list').prepend(e.li);
    while (tasks.size > MAX_TASKS) {
      const oldest = tasks.keys().next().value;
      tasks.get(oldest).li.remove();
      tasks.delete(oldest);
    }
  }
  e.task = Object.assign({}, e.task, t);
  renderTask(e);
}

function renderTask(e) {
  const t = e.task;
  const st = String(t.state || 'unknown');
  e.li.setAttribute('data-state', st);
  /* A UUID is long: its first block tells tasks apart on screen; the
   * whole id is in the tooltip and in data-task-id. */
  const id = String(t.id);
  const short = /^[0-9a-f]{8}-[0-9a-f-]{27}$/i.test(id) ? id.slice(0, 8) : id;
  const parts = [el('span', { class: 'task-id', title: id }, 'Task ' + short),
                 el('span', { class: 'badge', 'data-state': st }, st)];
  if (t.phase != null) {
    const total = t.phases != null ? '/' + t.phases : '';
    parts.push(el('span', { class: 'help' }, 'phase ' + t.phase + total));
  }
  if (t.error) parts.push(el('span', { class: 'error' }, String(t.error).slice(0, 120)));
  e.li.replaceChildren(...parts);
}

async function startTask() {
  const msg = $('task-msg');
  msg.textContent = 'Starting…';
  try {
    const res = await fetch('/hello', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.message || 'HTTP ' + res.status);
    const task = body.task && typeof body.task === 'object' ? body.task
      : { id: body.task_id, state: body.state || 'pending' };
    if (task.id == null) throw new Error('reply has no task_id');
    upsertTask(task);
    msg.textContent = 'Started task ' + task.id + '.';
  } catch (err) {
    msg.textContent = 'Could not start a task: ' + err.message;
  }
}

/* After a reconnect, bring the tasks we show up to date: their events while
 * we were away are not replayed. */
async function refreshKnownTasks() {
  if (!tasks.size) return;
  try {
    const res = await fetch('/tasks', { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!res.ok) return;
    const body = await res.json();
    const list = Array.isArray(body) ? body : Array.isArray(body.tasks) ? body.tasks : [];
    for (const t of list) upsertTask(t, true);
  } catch (e) { /* the next events will do */ }
}

/* ---- Status panel, rendered generically from GET /status ---- */

/* Top-level scalars form the first group; each top-level object is a group
 * of its own, flattened below it ("http.responses.2xx"). */
const statusCells = new Map();   /* full key -> { div, dd, group } */
const statusGroups = new Map();  /* group name -> { sec, dl } */

function flattenStatus(obj, prefix, out) {
  for (const k of Object.keys(obj)) {
    if (out.length >= MAX_STATUS_FIELDS) return out;
    const key = prefix ? prefix + '.' + k : k;
    const v = obj[k];
    if (v && typeof v === 'object' && !Array.isArray(v)) flattenStatus(v, key, out);
    else if (Array.isArray(v)) out.push([key, v.every((x) => x == null || typeof x !== 'object') && v.length <= 8 ? v.join(', ') : '[' + v.length + ']']);
    else if (typeof v === 'number' || typeof v === 'boolean') out.push([key, v]);
    else if (typeof v === 'string') out.push([key, v.length > MAX_STATUS_STRING ? v.slice(0, MAX_STATUS_STRING) + '…' : v]);
    else if (v === null) out.push([key, '—']);
  }
  return out;
}

function fmtDuration(sec) {
  sec = Math.floor(sec);
  const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), s = sec % 60;
  return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + (d || h || m ? m + 'm ' : '') + s + 's';
}

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

function fmtStatusValue(key, v) {
  if (typeof v !== 'number') return String(v);
  if (/uptime/i.test(key)) return fmtDuration(/_ms$/.test(key) ? v / 1000 : v);
  if (/_bytes$/.test(key)) return fmtBytes(v);
  return Number.isInteger(v) ? v.toLocaleString('en-US') : v.toLocaleString('en-US', { maximumFractionDigits: 3 });
}

function statusGroup(name) {
  let g = statusGroups.get(name);
  if (!g) {
    g = { sec: el('section', { class: 'status-group', 'data-group': name }), dl: el('dl', { class: 'stats' }) };
    g.sec.append(el('h3', null, name || 'server'), g.dl);
    if (name) $('status-list').append(g.sec);
    else $('status-list').prepend(g.sec);
    statusGroups.set(name, g);
  }
  return g;
}

function renderStatus(json) {
  const fields = json && typeof json === 'object' ? flattenStatus(json, '', []) : [];
  const seen = new Set();
  for (const [key, v] of fields) {
    seen.add(key);
    let c = statusCells.get(key);
    if (!c) {
      const dot = key.indexOf('.');
      const group = dot < 0 ? '' : key.slice(0, dot);
      c = { div: el('div', { class: 'stat', 'data-key': key }), dd: el('dd', { class: 'num' }), group };
      c.div.append(el('dt', null, key.slice(dot + 1).replace(/_/g, ' ')), c.dd);
      statusGroup(group).dl.append(c.div);
      statusCells.set(key, c);
    }
    setCell(c.dd, fmtStatusValue(key, v));
  }
  for (const [key, c] of statusCells) {
    if (!seen.has(key)) { c.div.remove(); statusCells.delete(key); }
  }
  for (const [name, g] of statusGroups) {
    if (!g.dl.firstChild) { g.sec.remove(); statusGroups.delete(name); }
  }
}

async function pollStatus() {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), STATUS_TIMEOUT_MS);
  const msg = $('status-msg');
  try {
    const res = await fetch('/status', { signal: ctl.signal, cache: 'no-store', headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error('HTTP ' + res.status);
    renderStatus(await res.json());
    $('status-list').classList.remove('stale');
    if (msg.textContent) msg.textContent = '';
  } catch (err) {
    $('status-list').classList.add('stale');
    const text = 'Status unavailable (' + (err.name === 'AbortError' ? 'timed out' : err.message) + '); retrying.';
    if (msg.textContent !== text) msg.textContent = text;
  } finally {
    clearTimeout(timer);
    setTimeout(pollStatus, STATUS_INTERVAL_MS);
  }
}

/* ---- Notices (server "error" messages and the like) ---- */

let noticeTimer = 0;
function notice(text) {
  const n = $('notice');
  n.textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.textContent = ''; }, NOTICE_MS);
}

/* ---- The WebSocket connection ---- */

const conn = (function () {
  let ws = null;
  let attempt = 0;         /* failed connects in a row: drives the backoff */
  let retryTimer = 0;
  let openedAt = 0;
  let resumed = [];        /* symbols of the last "since" subscribe */

  function url() {
    return (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/ws';
  }

  function show(kind, text) {
    const p = $('conn');
    p.setAttribute('data-conn', kind);
    $('conn-text').textContent = text;
  }

  function send(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  /* New symbols ask for history so their charts fill at once. */
  function subscribe(symbols) {
    if (symbols.length) send({ action: 'subscribe', symbols, history: MAX_POINTS });
  }

  /* After a reconnect: the symbols we have quotes for resume together from
   * the newest position received (tickerd replays everything after that
   * point for all of a client's symbols; duplicates are dropped by
   * (epoch, seq)); the others start fresh. */
  function resume() {
    const known = [], fresh = [];
    let newest = null;
    for (const sym of state.symbols) {
      const r = state.bySymbol.get(sym);
      if (r && r.lastId) {
        known.push(sym);
        if (!newest || r.arrival > newest.arrival) newest = r;
      } else {
        fresh.push(sym);
      }
    }
    if (known.length) send({ action: 'subscribe', symbols: known, since: newest.lastId });
    resumed = known;
    subscribe(fresh);
  }

  /* The server could not replay from our position (it restarted, or the
   * position left its history): start those charts over from its history
   * rather than draw across the gap. */
  function restart() {
    const syms = resumed.filter((sym) => state.bySymbol.has(sym));
    resumed = [];
    if (!syms.length) return;
    for (const sym of syms) resetSeries(state.bySymbol.get(sym));
    send({ action: 'unsubscribe', symbols: syms });
    subscribe(syms);
    scheduleRender();
  }

  function unsubscribe(symbols) {
    send({ action: 'unsubscribe', symbols });
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    show(attempt ? 'reconnecting' : 'connecting', attempt ? 'Reconnecting…' : 'Connecting…');
    let sock;
    try {
      sock = new WebSocket(url());
    } catch (err) {
      retry();
      return;
    }
    ws = sock;
    sock.onopen = () => {
      openedAt = Date.now();
      show('live', 'Live');
      resume();
      send({ action: 'subscribe', topics: ['tasks'] });
      if (window.tickerdCandles) window.tickerdCandles.resubscribe();
      if (window.tickerdTape) window.tickerdTape.resubscribe();
      refreshKnownTasks();
    };
    sock.onmessage = (ev) => onMessage(ev.data);
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      if (openedAt && Date.now() - openedAt >= STABLE_MS) attempt = 0;
      openedAt = 0;
      retry();
    };
    /* An error is always followed by close, which does the work. */
    sock.onerror = () => {};
  }

  function retry() {
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, attempt));
    const delay = Math.round(cap / 2 + Math.random() * cap / 2);
    attempt++;
    show('reconnecting', 'Reconnecting in ' + Math.max(1, Math.round(delay / 1000)) + ' s…');
    retryTimer = setTimeout(connect, delay);
  }

  /* Back online, or the tab came back: do not sit out the rest of a backoff. */
  function nudge() {
    if (retryTimer && navigator.onLine !== false) connect();
  }

  return { connect, subscribe, unsubscribe, restart, send, nudge };
})();

function onMessage(data) {
  let m;
  try { m = JSON.parse(data); } catch (e) { return; }
  if (!m || typeof m !== 'object') return;
  if (window.tickerdCandles && window.tickerdCandles.onMessage(m)) return;   /* candles.js */
  if (window.tickerdTape && window.tickerdTape.onMessage(m)) return;         /* tape.js */
  switch (m.type) {
    case 'quote': {
      const r = state.bySymbol.get(m.symbol);
      if (r && ingest(r, m.data, m.id)) scheduleRender();
      break;
    }
    case 'history': {
      const r = state.bySymbol.get(m.symbol);
      if (!r || !Array.isArray(m.quotes)) break;
      mergeHistory(r, m.quotes);
      r.dirty = true;
      scheduleRender();
      break;
    }
    case 'recovery':
      if (m.recovered !== false) break;
      if (m.since != null) {
        conn.restart();
      } else if (m.symbol) {
        /* A gap upstream that the server's own history could not fill. */
        const range = m.missed_from != null ? ' (' + m.missed_from + '–' + m.missed_to + ')' : '';
        notice(m.symbol + ': some quotes were lost upstream' + range + '.');
      }
      break;
    case 'task':
      upsertTask(m.task);
      break;
    case 'error':
      notice('Server: ' + (m.message || m.error || 'error'));
      break;
    default:
      /* subscribed, unsubscribed, list: nothing to show. */
      break;
  }
}

/* ---- Start ---- */

function init() {
  if (window.tickerdCandles) window.tickerdCandles.init(conn.send);
  if (window.tickerdTape) window.tickerdTape.init(conn.send);
  state.symbols = loadSymbols();
  for (const sym of state.symbols) openSymbol(sym);
  renderChips();
  saveSymbols();

  $('add-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('symbol-input');
    if (addSymbol(input.value)) input.value = '';
    input.focus();
  });
  $('symbol-input').addEventListener('input', () => setInputError(''));
  $('start-task').addEventListener('click', startTask);
  window.addEventListener('hashchange', onHashChange);
  window.addEventListener('online', conn.nudge);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) conn.nudge(); });

  conn.connect();
  pollStatus();
}

init();
})();
