/* A small JSON writer into one growable buffer: for responses built on hot
 * paths (/status), where building a jansson tree and dumping it cost tens of
 * times more than the bytes written. Keys and strings are escaped. */
#ifndef TD_JSONW_H
#define TD_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Nesting deeper than this is a programming error: the writer stops. */
#define JW_MAX_DEPTH 8

typedef struct {
  char *p;
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
void jw_end(jsonw *w);                 /* closes the innermost object or array */
void jw_u64(jsonw *w, const char *key, uint64_t v);
/* The same with a string-literal key, quoted and measured at compile time
 * (a literal key needs no escaping): the form /status uses ~70 times a request. */
#define JW_U64(w, key, v) jw_u64_lit((w), "\"" key "\":", sizeof("\"" key "\":") - 1, (v))
void jw_u64_lit(jsonw *w, const char *quoted_key, size_t n, uint64_t v);
void jw_i64(jsonw *w, const char *key, int64_t v);
void jw_double(jsonw *w, const char *key, double v);
void jw_bool(jsonw *w, const char *key, bool v);
void jw_null(jsonw *w, const char *key);
void jw_str(jsonw *w, const char *key, const char *s);

#endif
