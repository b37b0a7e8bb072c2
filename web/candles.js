/*
 * tickerd dashboard, candles: a candlestick chart with a volume strip per
 * watched symbol, one timeframe selector for all, bars from GET /candles
 * then live from the WebSocket ("candle" messages, the in-progress bar
 * updated in place); and the lookup panel (GET /quotes/{symbol}, with the
 * answer and its latency).
 *
 * Candles are drawn by a uPlot plugin written here (hooks.draw): the price
 * series are in the chart only to set its scales and legend. Colours read
 * for colour-blind users: a rising bar is a hollow blue body, a falling one
 * a filled vermillion body (Okabe-Ito), so shape alone tells them apart.
 *
 * app.js calls window.tickerdCandles: init(send), open(sym), close(sym),
 * onMessage(m) (true when it was ours), resubscribe() after a reconnect.
 */
'use strict';

(function () {

/* The server's default timeframes (--candle-timeframes). */
const TIMEFRAMES = ['1s', '5s', '1m', '5m', '15m', '1h'];
const TF_SECONDS = { '1s': 1, '5s': 5, '1m': 60, '5m': 300, '15m': 900, '1h': 3600 };
/* 5 s bars fill a chart within minutes of `make run`. */
const DEFAULT_TF = '5s';
/* Bars per chart: what the server keeps per series (CANDLE_DEFAULT_HISTORY). */
const MAX_BARS = 300;
const CHART_HEIGHT = 220;
/* The volume strip takes the bottom fifth of the plot. */
const VOLUME_SHARE = 0.2;
/* A body this share of the bar's slot wide, at least one pixel. */
const BODY_SHARE = 0.7;
const TF_KEY = 'tickerd.candleTf';
const LOOKUP_TIMEOUT_MS = 10000;

const $ = (id) => document.getElementById(id);

const { el, cssVar } = window.tickerdDom;   /* dom.js */

let send = () => false;
let tf = DEFAULT_TF;
const charts = new Map();   /* symbol -> record */

function loadTf() {
  try {
    const saved = localStorage.getItem(TF_KEY);
    if (TIMEFRAMES.includes(saved)) return saved;
  } catch (e) { /* storage disabled */ }
  return DEFAULT_TF;
}

/* ---- bars ---- */

function barTime(b) { return Date.parse(b.t) / 1000; }

/* The same bar seen twice (GET and a live message, or two live updates):
 * the closed one, else the one with more trades (or quotes) in it, wins. */
function newer(a, b) {
  if (a.closed !== b.closed) return a.closed ? a : b;
  return (b.n || 0) >= (a.n || 0) ? b : a;
}

/* Inserts or replaces by bar time, keeping time order and MAX_BARS. */
function upsert(r, b) {
  if (!b || typeof b !== 'object' || !Number.isFinite(barTime(b))) return;
  const t = barTime(b);
  let i = r.bars.length;
  while (i > 0 && barTime(r.bars[i - 1]) > t) i--;
  if (i > 0 && barTime(r.bars[i - 1]) === t) r.bars[i - 1] = newer(r.bars[i - 1], b);
  else r.bars.splice(i, 0, b);
  if (r.bars.length > MAX_BARS) r.bars.splice(0, r.bars.length - MAX_BARS);
}

function columns(r) {
  const t = [], o = [], h = [], l = [], c = [], v = [];
  for (const b of r.bars) {
    t.push(barTime(b)); o.push(b.o); h.push(b.h); l.push(b.l); c.push(b.c); v.push(b.v);
  }
  return [t, o, h, l, c, v];
}

function render(r) {
  if (r.chart) r.chart.setData(columns(r));
  const last = r.bars[r.bars.length - 1];
  r.card.dataset.bars = String(r.bars.length);
  r.card.dataset.tf = tf;
  r.count.textContent = r.bars.length + ' bars of ' + tf +
    (last ? (last.src === 'mid' ? ' (quote mids: no trades)' : '') : ' (none yet)');
}

/* ---- the candlestick plugin ---- */

function candlePlugin(r) {
  function draw(u) {
    const [t, o, h, l, c, v] = u.data;
    const ctx = u.ctx;
    const up = cssVar('--candle-up', '#0072b2'), down = cssVar('--candle-down', '#d55e00');
    const slot = t.length > 0 ? Math.abs(u.valToPos(t[0] + (TF_SECONDS[tf] || 1), 'x', true) - u.valToPos(t[0], 'x', true)) : 0;
    const w = Math.max(1, Math.floor(slot * BODY_SHARE));
    const top = u.bbox.top, height = u.bbox.height;
    let vmax = 0;
    for (let i = 0; i < v.length; i++) vmax = Math.max(vmax, v[i] || 0);
    const drawn = [];
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, top, u.bbox.width, height);
    ctx.clip();
    ctx.lineWidth = Math.max(1, Math.round(devicePixelRatio));
    for (let i = 0; i < t.length; i++) {
      const x = Math.round(u.valToPos(t[i], 'x', true));
      if (x < u.bbox.left - w || x > u.bbox.left + u.bbox.width + w) continue;
      const rising = c[i] >= o[i];
      const colour = rising ? up : down;
      /* volume: a bar from the bottom, at most the strip's height */
      if (vmax > 0 && v[i] > 0) {
        const vh = Math.max(1, Math.round(v[i] / vmax * height * VOLUME_SHARE));
        ctx.globalAlpha = 0.35;
        ctx.fillStyle = colour;
        ctx.fillRect(x - w / 2, top + height - vh, w, vh);
        ctx.globalAlpha = 1;
      }
      const yh = Math.round(u.valToPos(h[i], 'y', true)), yl = Math.round(u.valToPos(l[i], 'y', true));
      const yo = Math.round(u.valToPos(o[i], 'y', true)), yc = Math.round(u.valToPos(c[i], 'y', true));
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      ctx.beginPath();
      ctx.moveTo(x + 0.5, yh);
      ctx.lineTo(x + 0.5, yl);
      ctx.stroke();
      const bodyTop = Math.min(yo, yc), bodyH = Math.max(1, Math.abs(yc - yo));
      if (rising) ctx.strokeRect(x - w / 2 + 0.5, bodyTop + 0.5, w - 1, bodyH);
      else ctx.fillRect(x - w / 2, bodyTop, w, bodyH);
      const closed = !!(r.bars[i] && r.bars[i].closed);
      drawn.push({ t: t[i], o: o[i], h: h[i], l: l[i], c: c[i], v: v[i], closed, x, yo, yc, yh, yl, rising });
    }
    ctx.restore();
    /* what the browser test compares with GET /candles */
    r.drawn = drawn;
    r.draws++;
  }
  return { hooks: { draw } };
}

const resizer = new ResizeObserver((entries) => {
  for (const e of entries) {
    const r = charts.get(e.target.dataset.symbol);
    const w = Math.floor(e.contentRect.width);
    if (r && r.chart && w > 0 && w !== r.chart.width) r.chart.setSize({ width: w, height: CHART_HEIGHT });
  }
});

let chartSeq = 0;

function makeChart(r) {
  const hid = 'candle-h-' + (++chartSeq);
  const card = el('section', { class: 'candle-card', 'data-symbol': r.sym, 'data-bars': '0',
                               'aria-labelledby': hid });
  const head = el('div', { class: 'chart-head' });
  head.append(el('h3', { id: hid }, r.sym));
  r.count = el('span', { class: 'help' }, 'loading…');
  head.append(r.count);
  const plot = el('div', { class: 'plot', 'data-symbol': r.sym, role: 'img',
                           'aria-label': r.sym + ' candlesticks with volume; rising bars hollow blue, falling bars filled orange' });
  card.append(head, plot);
  r.card = card;
  r.plot = plot;
  $('candle-charts').append(card);
  if (typeof window.uPlot !== 'function') {
    plot.textContent = 'Chart library not loaded.';
    return;
  }
  const fg = cssVar('--fg-muted', '#666'), grid = cssVar('--grid', 'rgba(128,128,128,.2)');
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  const hidden = (label, scale) => ({ label, scale: scale || 'y', paths: () => null, points: { show: false },
                                      value: (u, x) => (x == null ? '—' : scale ? String(x) : x.toFixed(2)) });
  r.chart = new window.uPlot({
    width: 300,
    height: CHART_HEIGHT,
    scales: {
      x: { time: true },
      /* prices keep the top of the plot clear of the volume strip */
      y: { range: (u, min, max) => {
        const pad = (max - min) * 0.05 || 0.01;
        return [min - pad - (max - min + 2 * pad) * VOLUME_SHARE / (1 - VOLUME_SHARE), max + pad];
      } },
      vol: { range: [0, 1] },
    },
    series: [{}, hidden('Open'), hidden('High'), hidden('Low'), hidden('Close'), hidden('Volume', 'vol')],
    axes: [Object.assign({}, axis), Object.assign({ size: 56 }, axis)],
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    plugins: [candlePlugin(r)],
  }, columns(r), plot);
  resizer.observe(plot);
}

/* ---- per symbol ---- */

function subscribe(syms) {
  if (syms.length) send({ action: 'subscribe', candles: { symbols: syms, tf } });
}

async function fetchBars(r) {
  const want = tf;
  try {
    const res = await fetch('/candles/' + encodeURIComponent(r.sym) + '?tf=' + want + '&limit=' + MAX_BARS,
                            { cache: 'no-store', headers: { Accept: 'application/json' } });
    if (want !== tf || !charts.has(r.sym)) return;
    if (res.status === 404) { render(r); return; }   /* no bars yet: live ones will come */
    const body = await res.json();
    for (const b of body.bars || []) upsert(r, b);
    render(r);
  } catch (e) {
    r.count.textContent = 'bars unavailable: ' + e.message;
  }
}

function open(sym) {
  if (charts.has(sym)) return;
  const r = { sym, bars: [], drawn: [], draws: 0, chart: null, card: null, plot: null, count: null };
  charts.set(sym, r);
  makeChart(r);
  subscribe([sym]);
  fetchBars(r);
}

function close(sym) {
  const r = charts.get(sym);
  if (!r) return;
  charts.delete(sym);
  send({ action: 'unsubscribe', candles: { symbols: [sym], tf } });
  if (r.chart) r.chart.destroy();
  resizer.unobserve(r.plot);
  r.card.remove();
}

function setTf(next) {
  if (!TIMEFRAMES.includes(next) || next === tf) return;
  const syms = [...charts.keys()];
  if (syms.length) send({ action: 'unsubscribe', candles: { symbols: syms, tf } });
  tf = next;
  try { localStorage.setItem(TF_KEY, tf); } catch (e) { /* private mode */ }
  for (const r of charts.values()) { r.bars = []; render(r); fetchBars(r); }
  subscribe(syms);
}

function onMessage(m) {
  if (m.type === 'candle') {
    const b = m.data;
    const r = b && charts.get(b.S);
    if (r && b.tf === tf) { upsert(r, b); render(r); }
    return true;
  }
  if (m.type === 'subscribed' && m.candles) return true;
  if (m.type === 'unsubscribed' && m.candles) return true;
  return false;
}

function resubscribe() {
  subscribe([...charts.keys()]);
  for (const r of charts.values()) fetchBars(r);
}

/* ---- lookup: GET /quotes/{symbol} ---- */

async function lookup(ev) {
  ev.preventDefault();
  const raw = $('lookup-input').value.trim().toUpperCase();
  const out = $('lookup-answer'), meta = $('lookup-meta');
  if (!/^[A-Z0-9./-]{1,16}$/.test(raw)) {
    meta.textContent = 'Not a symbol: use 1–16 of A–Z, 0–9, “.”, “/”, “-”.';
    out.textContent = '';
    return;
  }
  meta.textContent = 'Asking…';
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), LOOKUP_TIMEOUT_MS);
  const t0 = performance.now();
  try {
    const res = await fetch('/quotes/' + encodeURIComponent(raw), { signal: ctl.signal, cache: 'no-store',
                                                                      headers: { Accept: 'application/json' } });
    const text = await res.text();
    const ms = performance.now() - t0;
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* shown as sent */ }
    out.textContent = shown;
    meta.textContent = 'HTTP ' + res.status + ' in ' + ms.toFixed(1) + ' ms';
    meta.dataset.status = String(res.status);
  } catch (err) {
    out.textContent = '';
    meta.textContent = err.name === 'AbortError' ? 'No answer within ' + LOOKUP_TIMEOUT_MS / 1000 + ' s.' : 'Failed: ' + err.message;
  } finally {
    clearTimeout(timer);
  }
}

function init(sendFn) {
  send = sendFn;
  tf = loadTf();
  const sel = $('candle-tf');
  for (const name of TIMEFRAMES) {
    const opt = el('option', { value: name }, name);
    if (name === tf) opt.selected = true;
    sel.append(opt);
  }
  sel.addEventListener('change', () => setTf(sel.value));
  $('lookup-form').addEventListener('submit', lookup);
}

window.tickerdCandles = { init, open, close, onMessage, resubscribe,
                          state: () => ({ tf, charts }) };
})();
