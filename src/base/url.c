/* URL splitting, percent-decoding and query walking (url.h). */
#include "base/url.h"

#include <ctype.h>
#include <string.h>
#include <uv.h>

#include "base/hex.h"

static bool host_char_ok(char ch) { return isalnum((unsigned char)ch) || ch == '-' || ch == '.' || ch == '_'; }

static int parse_port(const char *p, const char *end, int *port) {
  if (p == end || end - p > URL_PORT_DIGITS) return -1;
  int v = 0;
  for (; p < end; p++) {
    if (!isdigit((unsigned char)*p)) return -1;
    v = v * 10 + (*p - '0');
  }
  if (v < 1 || v > 65535) return -1;
  *port = v;
  return 0;
}

static int fail(const char **why, const char *msg) {
  if (why) *why = msg;
  return -1;
}

int url_split(const char *url, url_parts *u, const char **why) {
  memset(u, 0, sizeof(*u));
  if (!url) return fail(why, "no URL");
  const char *sep = strstr(url, "://");
  if (!sep || sep == url) return fail(why, "missing scheme://");
  for (const char *s = url; s < sep; s++)
    if (!isalpha((unsigned char)*s) && *s != '+') return fail(why, "bad scheme");
  u->scheme = url;
  u->scheme_len = (size_t)(sep - url);
  const char *auth = sep + 3, *end = auth + strcspn(auth, "/?#");
  u->rest = end;
  /* The last '@' ends the userinfo, so a raw '@' in a password still works. */
  const char *at = NULL;
  for (const char *p = auth; p < end; p++)
    if (*p == '@') at = p;
  if (at) {
    u->userinfo = auth;
    u->userinfo_len = (size_t)(at - auth);
    auth = at + 1;
  }
  const char *port = NULL;
  if (auth < end && *auth == '[') {
    const char *rb = memchr(auth, ']', (size_t)(end - auth));
    if (!rb) return fail(why, "unterminated [ipv6] host");
    if (rb + 1 < end) {
      if (rb[1] != ':') return fail(why, "junk after ]");
      port = rb + 2;
    }
    u->host = auth + 1;
    u->host_len = (size_t)(rb - auth - 1);
    char tmp[64];
    unsigned char addr[16];
    if (u->host_len == 0 || u->host_len >= sizeof(tmp)) return fail(why, "bad [ipv6] host");
    memcpy(tmp, u->host, u->host_len);
    tmp[u->host_len] = 0;
    if (uv_inet_pton(AF_INET6, tmp, addr) != 0) return fail(why, "bad [ipv6] host");
    u->ipv6 = true;
  } else {
    const char *colon = memchr(auth, ':', (size_t)(end - auth));
    u->host = auth;
    u->host_len = (size_t)((colon ? colon : end) - auth);
    if (colon) port = colon + 1;
    for (size_t i = 0; i < u->host_len; i++)
      if (!host_char_ok(u->host[i])) return fail(why, "bad character in host");
  }
  if (u->host_len == 0) return fail(why, "missing host");
  if (port && parse_port(port, end, &u->port) < 0) return fail(why, "bad port");
  return 0;
}

long url_decode(const char *p, size_t n, char *out, size_t out_size, unsigned flags) {
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    if (w + 1 >= out_size) return -1;
    char ch = p[i];
    if (ch == '%') {
      int hi = i + 2 < n ? hex_value(p[i + 1]) : -1;
      int lo = hi >= 0 ? hex_value(p[i + 2]) : -1;
      if (lo >= 0 && (hi | lo || !(flags & URL_DECODE_STRICT))) {
        ch = (char)(hi * 16 + lo);
        i += 2;
      } else if (flags & URL_DECODE_STRICT) {
        return -1;
      }
    } else if (ch == '+' && (flags & URL_DECODE_FORM)) {
      ch = ' ';
    }
    out[w++] = ch;
  }
  if (out_size == 0) return -1;
  out[w] = '\0';
  return (long)w;
}

bool url_query_next(const char **pos, const char *end, const char **key, size_t *key_len, const char **val,
                    size_t *val_len) {
  const char *p = *pos;
  if (p >= end) return false;
  const char *amp = memchr(p, '&', (size_t)(end - p));
  const char *item_end = amp ? amp : end;
  const char *eq = memchr(p, '=', (size_t)(item_end - p));
  *key = p;
  *key_len = (size_t)((eq ? eq : item_end) - p);
  *val = eq ? eq + 1 : item_end;
  *val_len = (size_t)(item_end - *val);
  *pos = amp ? amp + 1 : end;
  return true;
}
