/* The JSON writer (see jsonw.h). */
#include "base/jsonw.h"
#include "base/hex.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void jw_init(jsonw *w, size_t cap) {
  memset(w, 0, sizeof(*w));
  w->cap = cap ? cap : 256;
  w->p = malloc(w->cap);
  if (w->p) w->p[0] = '\0';
  else w->failed = true, w->cap = 0;
  w->first[0] = true;
}

void jw_free(jsonw *w) {
  free(w->p);
  w->p = NULL;
}

bool jw_grow(jsonw *w, size_t n) {
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
  char *o = jw_room(w, n);
  if (!o) return;
  memcpy(o, s, n);
  jw_commit(w, o + n);
}

/* Bytes of s[0..n) before the first one that needs escaping. */
static size_t plain_run(const char *s, size_t n) {
  size_t i = 0;
  for (unsigned char c; i < n && (c = (unsigned char)s[i]) >= 0x20 && c != '"' && c != '\\' && c != 0x7f;) i++;
  return i;
}

char *json_escape(char *o, const char *s, size_t n) {
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) continue;
    memcpy(o, s + run, i - run);
    o += i - run;
    run = i + 1;
    *o++ = '\\';
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '\b': *o++ = 'b'; break;
    case '\f': *o++ = 'f'; break;
    case '\n': *o++ = 'n'; break;
    case '\r': *o++ = 'r'; break;
    case '\t': *o++ = 't'; break;
    default:
      memcpy(o, "u00", 3);
      o[3] = HEX_DIGITS[c >> 4];
      o[4] = HEX_DIGITS[c & 15];
      o += 5;
    }
  }
  memcpy(o, s + run, n - run);
  return o + (n - run);
}

char *json_quote(char *o, const char *s, size_t n) {
  *o++ = '"';
  o = json_escape(o, s, n);
  *o++ = '"';
  return o;
}

/* s[0..n) quoted; `colon` appends ':' (a key). Keys and most values need no
 * escape: they take only the room they need. */
static void put_string(jsonw *w, const char *s, size_t n, bool colon) {
  bool plain = plain_run(s, n) == n;
  char *o = jw_room(w, (plain ? n : JSON_ESCAPED_MAX(n)) + 3);
  if (!o) return;
  o = json_quote(o, s, n);
  *o = ':';
  jw_commit(w, o + colon);
}

/* The comma and the key (escaped) before a value. */
static void prefix(jsonw *w, const char *key) {
  char *o = jw_room(w, 1);
  if (!o) return;
  jw_commit(w, jw_separate(w, o));
  if (key) put_string(w, key, strlen(key), true);
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

void jw_raw(jsonw *w, const char *key, const char *json, size_t n) {
  prefix(w, key);
  put(w, json, n);
}

void jw_u64(jsonw *w, const char *key, uint64_t v) {
  prefix(w, key);
  char *o = jw_room(w, JW_NUMBER_MAX);
  if (o) jw_commit(w, fmt_u64(o, v));
}

static void put_i64(jsonw *w, int64_t v) {
  char *o = jw_room(w, JW_NUMBER_MAX);
  if (o) jw_commit(w, fmt_i64(o, v));
}

void jw_i64(jsonw *w, const char *key, int64_t v) {
  prefix(w, key);
  put_i64(w, v);
}

/* The separator and an already quoted key (see the JW_ macros). */
static void put_lit_key(jsonw *w, const char *quoted_key, size_t n) {
  char *o = jw_room(w, n + 1);
  if (!o) return;
  o = jw_separate(w, o);
  memcpy(o, quoted_key, n);
  jw_commit(w, o + n);
}

void jw_i64_lit(jsonw *w, const char *quoted_key, size_t n, int64_t v) {
  put_lit_key(w, quoted_key, n);
  put_i64(w, v);
}

void jw_str_lit(jsonw *w, const char *quoted_key, size_t n, const char *s) {
  put_lit_key(w, quoted_key, n);
  if (!s) s = "";
  put_string(w, s, strlen(s), false);
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
  if (!s) s = "";
  jw_strn(w, key, s, strlen(s));
}

void jw_strn(jsonw *w, const char *key, const char *s, size_t n) {
  prefix(w, key);
  put_string(w, s, n, false);
}
