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

/* 1 for the bytes a JSON string holds as they are: all but control bytes
 * (the NUL among them), '"', '\\' and DEL. One load per byte: every key
 * and string value of a document is scanned with it. */
#define P0 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
#define P1 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
static const unsigned char plain_table[256] = {
  P0, P0,                                          /* 0x00-0x1f: control */
  1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x22 '"' */
  P1, P1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,  /* 0x5c '\\' */
  P1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,  /* 0x7f DEL */
  P1, P1, P1, P1, P1, P1, P1, P1,                  /* 0x80-0xff: UTF-8, copied */
};

static bool plain_byte(unsigned char c) { return plain_table[c]; }

/* Bytes of s before the first one that needs escaping (or the NUL), four
 * a step: each is tested in order, so nothing past the NUL is read. */
static size_t plain_run_z(const char *s) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t n = 0;; n += 4) {
    if (!plain_table[u[n]]) return n;
    if (!plain_table[u[n + 1]]) return n + 1;
    if (!plain_table[u[n + 2]]) return n + 2;
    if (!plain_table[u[n + 3]]) return n + 3;
  }
}

/* Bytes of s[0..n) before the first one that needs escaping. */
static size_t plain_run(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && plain_byte((unsigned char)s[i])) i++;
  return i;
}

char *json_escape(char *o, const char *s, size_t n) {
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (plain_byte(c)) continue;
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

/* s[0..n) quoted, `plain` when no byte of it needs escaping; `colon`
 * appends ':' (a key). Keys and most values are plain: one copy. */
static void put_quoted(jsonw *w, const char *s, size_t n, bool plain, bool colon) {
  char *o = jw_room(w, (plain ? n : JSON_ESCAPED_MAX(n)) + 3);
  if (!o) return;
  if (plain) {
    *o++ = '"';
    memcpy(o, s, n);
    o += n;
    *o++ = '"';
  } else {
    o = json_quote(o, s, n);
  }
  *o = ':';
  jw_commit(w, o + colon);
}

/* A NUL-terminated string: read once when it needs no escape. */
static void put_cstring(jsonw *w, const char *s, bool colon) {
  size_t n = plain_run_z(s);
  bool plain = s[n] == '\0';
  if (!plain) n += strlen(s + n);
  put_quoted(w, s, n, plain, colon);
}

/* The comma and the key (escaped) before a value. */
static void prefix(jsonw *w, const char *key) {
  char *o = jw_room(w, 1);
  if (!o) return;
  jw_commit(w, jw_separate(w, o));
  if (key) put_cstring(w, key, true);
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
  put_cstring(w, s ? s : "", false);
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
  put_cstring(w, s ? s : "", false);
}

void jw_strn(jsonw *w, const char *key, const char *s, size_t n) {
  prefix(w, key);
  put_quoted(w, s, n, plain_run(s, n) == n, false);
}
