/* Route matching over the caller's table. */
#include "http/router.h"

#include <stdio.h>
#include <string.h>

#include "llhttp.h"

/* Matches `path` against `pattern`. A "{name}" segment matches one
 * non-empty path segment and "{name...}" the rest of the path; both become
 * req->params in order. */
static bool route_match(const char *pattern, const char *path, size_t path_len, td_request *req) {
  const char *p = pattern, *s = path, *end = path + path_len;
  int nparam = 0;
  while (*p) {
    if (*p == '{') {
      const char *close = strchr(p, '}');
      bool rest = close - p > 4 && !strncmp(close - 3, "...", 3);
      const char *seg_end = rest ? end : memchr(s, '/', (size_t)(end - s));
      if (!seg_end) seg_end = end;
      if (seg_end == s && !rest) return false;
      if (nparam < 2) {
        req->params[nparam] = s;
        req->param_lens[nparam++] = (size_t)(seg_end - s);
      }
      s = seg_end;
      p = close + 1;
      continue;
    }
    if (s == end || *p != *s) return false;
    p++;
    s++;
  }
  return s == end;
}

static unsigned method_bit(uint8_t method) {
  switch (method) {
    case HTTP_GET:
    case HTTP_HEAD: return ROUTE_GET;
    case HTTP_POST: return ROUTE_POST;
    default: return 0;
  }
}

/* The index of the route that answers req's method and path (its params
 * set), or -1 with *allowed the methods the path does accept (0: none). */
static int route_find(const td_route *routes, int n_routes, td_request *req, unsigned *allowed) {
  unsigned want = method_bit(req->method);
  *allowed = 0;
  for (int i = 0; i < n_routes; i++) {
    if (!route_match(routes[i].pattern, req->path, req->path_len, req)) continue;
    if (routes[i].methods & want) return i;
    *allowed |= routes[i].methods;
  }
  return -1;
}

void router_dispatch(const td_route *routes, int n_routes, td_request *req) {
  unsigned allowed;
  int i = route_find(routes, n_routes, req, &allowed);
  if (i >= 0) {
    req->route_index = i;
    routes[i].handler(req);
    return;
  }
  if (allowed) {
    char allow[64];
    snprintf(allow, sizeof(allow), "Allow: %s%s%s\r\n", allowed & ROUTE_GET ? "GET, HEAD" : "",
             (allowed & ROUTE_GET) && (allowed & ROUTE_POST) ? ", " : "", allowed & ROUTE_POST ? "POST" : "");
    http_error(req, 405, "method_not_allowed", "this path does not accept that method", allow);
    return;
  }
  http_error(req, 404, "not_found", "no such endpoint", NULL);
}
