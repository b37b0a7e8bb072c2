/* A small JSON writer into one growable buffer: for responses built on hot
 * paths (/status), where building a jansson tree and dumping it cost tens of
 * times more than the bytes written. Keys and strings are escaped.
 *
 * The JW_ macros take string-literal keys: the key is quoted and measured at
 * compile time, and the inline writers below turn into a few stores, so a
 * counter of /status costs tens of instructions instead of hundreds. */
#ifndef TD_JSONW_H
#define TD_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fmt_num.h"

/* Nesting deeper than this is a programming error: the writer stops. */
#define JW_MAX_DEPTH 8
/* Room one number needs at most: a comma, a sign and FMT_U64_MAX digits. */
#define JW_NUMBER_MAX (2 + FMT_U64_MAX)

typedef struct {
  char *p; /* always NUL-terminated at p[len] unless failed */
  size_t len, cap;
  int depth;
  bool first[JW_MAX_DEPTH + 1];  /* no value written yet at this depth */
  char closer[JW_MAX_DEPTH + 1]; /* '}' or ']' for each open level */
  bool failed;                   /* out of memory or too deep: the output is invalid */
} jsonw;

void jw_init(jsonw *w, size_t cap);
void jw_free(jsonw *w);
/* `key` is NULL inside arrays and for the outermost value. */
void jw_object(jsonw *w, const char *key);
void jw_array(jsonw *w, const char *key);
void jw_end(jsonw *w); /* closes the innermost object or array */
void jw_u64(jsonw *w, const char *key, uint64_t v);
void jw_i64(jsonw *w, const char *key, int64_t v);
void jw_double(jsonw *w, const char *key, double v);
void jw_bool(jsonw *w, const char *key, bool v);
void jw_null(jsonw *w, const char *key);
void jw_str(jsonw *w, const char *key, const char *s);
/* s[0..n), NUL bytes included (as \u0000). */
void jw_strn(jsonw *w, const char *key, const char *s, size_t n);
/* `json` (n bytes), already valid JSON, copied as it is: a stored payload
 * keeps the number text it was published with. */
void jw_raw(jsonw *w, const char *key, const char *json, size_t n);

/* Literal keys: JW_U64(w, "requests", n) is jw_u64(w, "requests", n). */
#define JW_LIT(key) "\"" key "\":"
#define JW_U64(w, key, v) jw_u64_lit((w), JW_LIT(key), sizeof(JW_LIT(key)) - 1, (v))
#define JW_I64(w, key, v) jw_i64_lit((w), JW_LIT(key), sizeof(JW_LIT(key)) - 1, (v))
#define JW_STR(w, key, s) jw_str_lit((w), JW_LIT(key), sizeof(JW_LIT(key)) - 1, (s))
#define JW_OBJECT(w, key) jw_open_lit((w), JW_LIT(key) "{", sizeof(JW_LIT(key) "{") - 1, '}')

/* ---- the inline writers behind the JW_ macros ---------------------------- */

void jw_i64_lit(jsonw *w, const char *quoted_key, size_t n, int64_t v);
void jw_str_lit(jsonw *w, const char *quoted_key, size_t n, const char *s);

/* Grows the buffer for n more bytes and a NUL; false once the writer failed. */
bool jw_grow(jsonw *w, size_t n);

/* Where n more bytes go after the separator, or NULL. */
static inline char *jw_room(jsonw *w, size_t n) {
  if (w->len + n + 1 > w->cap && !jw_grow(w, n)) return NULL;
  return w->p + w->len;
}

/* Writes the comma a value needs unless it is the first at its level. */
static inline char *jw_separate(jsonw *w, char *o) {
  *o = ',';
  o += !w->first[w->depth];
  w->first[w->depth] = false;
  return o;
}

static inline void jw_commit(jsonw *w, char *end) {
  *end = '\0';
  w->len = (size_t)(end - w->p);
}

static inline void jw_u64_lit(jsonw *w, const char *quoted_key, size_t n, uint64_t v) {
  char *o = jw_room(w, n + JW_NUMBER_MAX);
  if (!o) return;
  o = jw_separate(w, o);
  memcpy(o, quoted_key, n);
  jw_commit(w, fmt_u64(o + n, v));
}

/* `opener` is the quoted key, the colon and the bracket; `closer` its match. */
static inline void jw_open_lit(jsonw *w, const char *opener, size_t n, char closer) {
  char *o = jw_room(w, n + 1);
  if (!o || w->depth == JW_MAX_DEPTH) {
    w->failed = true;
    return;
  }
  o = jw_separate(w, o);
  memcpy(o, opener, n);
  jw_commit(w, o + n);
  w->first[++w->depth] = true;
  w->closer[w->depth] = closer;
}

/* The one JSON string escaper (the writer above, the message encoder and the
 * log all use it): '"' and '\\' get a backslash, \b \f \n \r \t their short
 * forms, other control bytes and DEL \u00XX; everything else, UTF-8
 * included, is copied. Writes the escaped s[0..n), without quotes, at `o`,
 * which has room for JSON_ESCAPED_MAX(n) bytes, and returns the end. */
#define JSON_ESCAPED_MAX(n) ((n) * 6)
char *json_escape(char *o, const char *s, size_t n);
/* s[0..n) escaped between quotes: JSON_ESCAPED_MAX(n) + 2 bytes at most. */
char *json_quote(char *o, const char *s, size_t n);

#endif
