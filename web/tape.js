/*
 * tickerd dashboard, trade tape: the last TAPE_MAX trades of one watched
 * symbol (chosen with a native <select>), newest first, and that symbol's
 * bid, ask and spread from its live quotes.
 *
 * Trades come over the page's WebSocket: {"action":"subscribe","trades":[sym]}
 * answered by {"type":"trade","symbol":..,"data":{"p":..,"s":..,"t":..}}.
 * The tape is live only (no history): it fills as trades are published.
 * An uptick or downtick is written as text (▲ up, ▼ down, = same) and also
 * coloured (blue/orange, Okabe-Ito, as the candles), never by colour alone.
 *
 * app.js calls window.tickerdTape: init(send), open(sym), close(sym),
 * onMessage(m) (true when it was the tape's alone), resubscribe().
 */
'use strict';

(function () {

/* Rows on the tape: a screenful on a desktop, what a reader can follow. */
const TAPE_MAX = 50;
const TAPE_KEY = 'tickerd.tapeSymbol';

const $ = (id) => document.getElementById(id);
const { el } = window.tickerdDom;   /* dom.js */

let send = () => false;
let sym = '';                 /* the symbol on the tape, '' for none */
let lastPrice = null;         /* of the newest trade shown: the tick's reference */
const watched = [];           /* the watchlist's symbols, in order */
let preferred = '';           /* the symbol chosen last time (localStorage) */

function fmtPrice(p) { return typeof p === 'number' && isFinite(p) ? p.toFixed(p < 1 ? 4 : 2) : '—'; }

function fmtTime(t) {
  const d = new Date(t);
  if (isNaN(d)) return '—';
  return d.toLocaleTimeString([], { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function tick(p) {
  if (lastPrice == null || p === lastPrice) return { cls: 'tick-same', text: '= same' };
  return p > lastPrice ? { cls: 'tick-up', text: '▲ up' } : { cls: 'tick-down', text: '▼ down' };
}

function addTrade(d) {
  if (!d || typeof d.p !== 'number') return;
  const k = tick(d.p);
  lastPrice = d.p;
  const row = el('tr', { class: k.cls });
  row.append(el('td', null, fmtTime(d.t)), el('td', { class: 'num' }, fmtPrice(d.p)),
             el('td', { class: 'num' }, d.s != null ? String(d.s) : '—'), el('td', { class: 'tick' }, k.text));
  const body = $('tape-rows');
  body.prepend(row);
  while (body.rows.length > TAPE_MAX) body.deleteRow(body.rows.length - 1);
  $('tape-empty').hidden = true;
  $('tape-count').textContent = body.rows.length + ' of the last ' + TAPE_MAX + ' trades';
}

function setSpread(q) {
  const bid = q && q.bp, ask = q && q.ap;
  const ok = typeof bid === 'number' && typeof ask === 'number';
  $('tape-bid').textContent = ok ? fmtPrice(bid) : '—';
  $('tape-ask').textContent = ok ? fmtPrice(ask) : '—';
  /* in the bid's precision: a spread of a cent reads 0.01, not 0.0100 */
  $('tape-spread').textContent = ok ? (ask - bid).toFixed(bid < 1 ? 4 : 2) : '—';
}

function clear() {
  $('tape-rows').replaceChildren();
  $('tape-empty').hidden = false;
  $('tape-count').textContent = '';
  lastPrice = null;
  setSpread(null);
}

function choose(next) {
  if (next === sym) return;
  if (sym) send({ action: 'unsubscribe', trades: [sym] });
  sym = next;
  try { localStorage.setItem(TAPE_KEY, sym); } catch (e) { /* private mode */ }
  clear();
  if (sym) send({ action: 'subscribe', trades: [sym] });
  const sel = $('tape-symbol');
  if (sel.value !== sym) sel.value = sym;
}

function renderOptions() {
  const sel = $('tape-symbol');
  sel.replaceChildren(...watched.map((s) => el('option', { value: s }, s)));
  sel.disabled = !watched.length;
  if (sym) sel.value = sym;
}

function open(s) {
  if (watched.includes(s)) return;
  watched.push(s);
  renderOptions();
  /* the first watched symbol, until the one chosen last time comes */
  if (!sym || s === preferred) choose(s);
}

function close(s) {
  const i = watched.indexOf(s);
  if (i < 0) return;
  watched.splice(i, 1);
  renderOptions();
  if (s === sym) {
    send({ action: 'unsubscribe', trades: [sym] });
    sym = '';
    clear();
    if (watched.length) choose(watched[0]);
  }
}

function onMessage(m) {
  if (m.type === 'trade') {
    if (m.symbol === sym) addTrade(m.data);
    return true;
  }
  if (m.type === 'quote' && m.symbol === sym) setSpread(m.data);   /* app.js draws it too */
  if (m.type === 'history' && m.symbol === sym && Array.isArray(m.quotes) && m.quotes.length)
    setSpread(m.quotes[m.quotes.length - 1]);
  return (m.type === 'subscribed' || m.type === 'unsubscribed') && Array.isArray(m.trades);
}

function resubscribe() {
  if (sym) send({ action: 'subscribe', trades: [sym] });
}

function init(sendFn) {
  send = sendFn;
  try { preferred = localStorage.getItem(TAPE_KEY) || ''; } catch (e) { /* storage disabled */ }
  $('tape-symbol').addEventListener('change', (ev) => choose(ev.target.value));
  clear();
}

window.tickerdTape = { init, open, close, onMessage, resubscribe, state: () => ({ sym, max: TAPE_MAX }) };
})();
