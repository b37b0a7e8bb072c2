/* The JSON writer (see jsonw.h). */
#include "jsonw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jw_init(jsonw *w, size_t cap) {
  memset(w, 0, sizeof(*w));
  w->p = malloc(cap ? cap : 256);
  w->cap = cap ? cap : 256;
  w->failed = w->p == NULL;
  w->first[0] = true;
}

void jw_free(jsonw *w) {
  free(w->p);
  w->p = NULL;
}

static bool reserve(jsonw *w, size_t n) {
  if (w->failed) return false;
  if (w->len + n + 1 <= w->cap) return true;
  size_t cap = w->cap * 2;
  while (cap < w->len + n + 1) cap *= 2;
  char *p = realloc(w->p, cap);
  if (!p) {
    w->failed = true;
    return false;
  }
  w->p = p;
  w->cap = cap;
  return true;
}

static void put(jsonw *w, const char *s, size_t n) {
  if (!reserve(w, n)) return;
  memcpy(w->p + w->len, s, n);
  w->len += n;
  w->p[w->len] = '\0';
}

static void put_string(jsonw *w, const char *s) {
  static const char hex[] = "0123456789abcdef";
  put(w, "\"", 1);
  for (const char *run = s;; s++) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    put(w, run, (size_t)(s - run));
    if (c == '\0') break;
    char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    if (c == '"' || c == '\\') put(w, (char[]){'\\', (char)c}, 2);
    else put(w, e, 6);
    run = s + 1;
  }
  put(w, "\"", 1);
}

static bool plain(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == '"' || s[i] == '\\') return false;
  return true;
}

/* The comma and key before a value, written in one go: keys are short
 * literals, and this runs for every field of every /status. */
static void prefix(jsonw *w, const char *key) {
  bool comma = !w->first[w->depth];
  w->first[w->depth] = false;
  size_t n = key ? strlen(key) : 0;
  if (key && !plain(key, n)) {
    if (comma) put(w, ",", 1);
    put_string(w, key);
    put(w, ":", 1);
    return;
  }
  if (!reserve(w, n + 4)) return;
  char *o = w->p + w->len;
  if (comma) *o++ = ',';
  if (key) {
    *o++ = '"';
    memcpy(o, key, n);
    o += n;
    *o++ = '"';
    *o++ = ':';
  }
  *o = '\0';
  w->len = (size_t)(o - w->p);
}

static void open_(jsonw *w, const char *key, char c) {
  prefix(w, key);
  put(w, &c, 1);
  if (w->depth == JW_MAX_DEPTH) {
    w->failed = true;
    return;
  }
  w->first[++w->depth] = true;
  w->closer[w->depth] = c == '{' ? '}' : ']';
}

void jw_object(jsonw *w, const char *key) { open_(w, key, '{'); }
void jw_array(jsonw *w, const char *key) { open_(w, key, '['); }

void jw_end(jsonw *w) {
  if (w->depth == 0 || w->failed) {
    w->failed = true;
    return;
  }
  put(w, &w->closer[w->depth], 1);
  w->depth--;
}

/* A key and a whole number, written with one reservation and no snprintf:
 * /status is ~90 of these, and their formatting was most of its cost. */
static void put_number(jsonw *w, const char *key, uint64_t v, bool negative) {
  char digits[24], *e = digits + sizeof(digits), *d = e;
  do {
    *--d = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  if (negative) *--d = '-';
  size_t dn = (size_t)(e - d), kn = key ? strlen(key) : 0;
  if (key && !plain(key, kn)) {
    prefix(w, key);
    put(w, d, dn);
    return;
  }
  bool comma = !w->first[w->depth];
  w->first[w->depth] = false;
  if (!reserve(w, kn + dn + 4)) return;
  char *o = w->p + w->len;
  if (comma) *o++ = ',';
  if (key) {
    *o++ = '"';
    memcpy(o, key, kn);
    o += kn;
    *o++ = '"';
    *o++ = ':';
  }
  memcpy(o, d, dn);
  o += dn;
  *o = '\0';
  w->len = (size_t)(o - w->p);
}

void jw_u64(jsonw *w, const char *key, uint64_t v) { put_number(w, key, v, false); }

void jw_u64_lit(jsonw *w, const char *quoted_key, size_t n, uint64_t v) {
  char digits[24], *e = digits + sizeof(digits), *d = e;
  do {
    *--d = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  size_t dn = (size_t)(e - d);
  if (!reserve(w, n + dn + 1)) return;
  char *o = w->p + w->len;
  if (!w->first[w->depth]) *o++ = ',';
  w->first[w->depth] = false;
  memcpy(o, quoted_key, n);
  memcpy(o + n, d, dn);
  o += n + dn;
  *o = '\0';
  w->len = (size_t)(o - w->p);
}

void jw_i64(jsonw *w, const char *key, int64_t v) {
  put_number(w, key, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0);
}

void jw_double(jsonw *w, const char *key, double v) {
  char b[32];
  prefix(w, key);
  if (!isfinite(v)) {
    put(w, "null", 4);
    return;
  }
  put(w, b, (size_t)snprintf(b, sizeof(b), "%.6g", v));
}

void jw_bool(jsonw *w, const char *key, bool v) {
  prefix(w, key);
  put(w, v ? "true" : "false", v ? 4 : 5);
}

void jw_null(jsonw *w, const char *key) {
  prefix(w, key);
  put(w, "null", 4);
}

void jw_str(jsonw *w, const char *key, const char *s) {
  prefix(w, key);
  put_string(w, s ? s : "");
}
