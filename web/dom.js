/*
 * tickerd dashboard: the two DOM helpers app.js and candles.js share.
 * Loaded first; everything the server sends is written with textContent.
 */
'use strict';

window.tickerdDom = {
  el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) for (const k of Object.keys(attrs)) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  },
  cssVar(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  },
};
