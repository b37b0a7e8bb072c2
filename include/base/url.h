/* URLs: the one splitter of scheme://[userinfo@]host[:port][/path?query#frag],
 * the one percent-decoder, and the one walk over "k=v&k=v" query strings.
 * Each user (redis URLs, the HTTPS/WebSocket client, HTTP requests) checks
 * what it accepts on top; nothing here allocates. */
#ifndef TD_URL_H
#define TD_URL_H

#include <stdbool.h>
#include <stddef.h>

/* Ports have at most this many digits (65535). */
#define URL_PORT_DIGITS 5

typedef struct {
  const char *scheme;      /* without "://" */
  size_t scheme_len;
  const char *userinfo;    /* before the last '@' of the authority, or NULL */
  size_t userinfo_len;
  const char *host;        /* brackets of an IPv6 literal stripped */
  size_t host_len;
  bool ipv6;               /* the host was [bracketed] (and is a valid IPv6 address) */
  int port;                /* 1-65535, or 0 when the URL has none */
  const char *rest;        /* from the first '/', '?' or '#' after the authority; "" if none */
} url_parts;

/* Splits `url`. Host names are letters, digits, '.', '-' and '_'; a port is
 * 1 to 65535. Returns 0, or -1 with *why a static message. */
int url_split(const char *url, url_parts *out, const char **why);

/* Percent-decoding flags. */
#define URL_DECODE_FORM   1u  /* '+' is a space (query strings) */
#define URL_DECODE_STRICT 2u  /* a bad escape or %00 fails instead of staying literal */

/* Decodes p[0..n) into out (NUL-terminated). Returns the decoded length, or
 * -1 when it does not fit or (strict) an escape is bad. */
long url_decode(const char *p, size_t n, char *out, size_t out_size, unsigned flags);

/* Walks a query string: each call yields the next "key=value" item's raw
 * (still encoded) spans and returns false at the end. `*pos` starts at the
 * query and moves to `end`. An item without '=' has an empty value. */
bool url_query_next(const char **pos, const char *end, const char **key, size_t *key_len, const char **val,
                    size_t *val_len);

#endif
