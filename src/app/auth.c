/* Subscriber access control (see auth.h). Tokens and secrets are never logged. */
#include "app/auth.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "app/app.h"
#include "base/log.h"

auth_stats auth_counters;

static bool origin_in_list(const char *list, const char *origin, size_t n) {
  const char *p = list;
  while (p && *p) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    while (len && *p == ' ') p++, len--;
    if (len == n && !strncasecmp(p, origin, n)) return true;
    p = comma ? comma + 1 : NULL;
  }
  return false;
}

/* Same origin: the Origin's host[:port] equals the Host header. */
static bool same_host(const td_request *req, const char *origin, size_t n) {
  const td_header *host = http_header(req, "host");
  if (!host) return false;
  const char *sep = memmem(origin, n, "://", 3);
  if (!sep) return false;
  const char *h = sep + 3;
  size_t hn = n - (size_t)(h - origin);
  return hn == host->value_len && !strncasecmp(h, host->value, hn);
}

static bool origin_allowed(td_request *req) {
  const td_config *cfg = req_app(req)->cfg;
  const td_header *o = http_header(req, "origin");
  if (!o) return true; /* not a browser: Origin is a browser's promise, nothing else sends it */
  if (cfg->allowed_origins && *cfg->allowed_origins) return origin_in_list(cfg->allowed_origins, o->value, o->value_len);
  return !cfg->auth || same_host(req, o->value, o->value_len);
}

static void deny(td_request *req, int status, const char *code, const char *message, uint64_t *counter) {
  (*counter)++;
  td_logline *l = log_begin(TD_LOG_WARN, "subscriber_denied");
  if (l) {
    log_str(l, "reason", code);
    log_str(l, "client_ip", conn_peer_ip(req->conn));
    log_end(l);
  }
  http_error(req, status, code, message, status == 401 ? "WWW-Authenticate: Bearer realm=\"tickerd\"\r\n" : NULL);
}

bool auth_subscriber(td_request *req, bool websocket, jwt_claims *claims) {
  const td_config *cfg = req_app(req)->cfg;
  memset(claims, 0, sizeof(*claims));
  claims->all_symbols = true;
  if (websocket && !origin_allowed(req)) {
    deny(req, 403, "forbidden_origin", "this Origin may not open a WebSocket here", &auth_counters.forbidden_origin);
    return false;
  }
  if (!cfg->auth) return true;
  char token[JWT_MAX_TOKEN + 1];
  size_t len = 0;
  const td_header *h = http_header(req, "authorization");
  if (h && h->value_len > 7 && !strncasecmp(h->value, "Bearer ", 7) && h->value_len - 7 <= JWT_MAX_TOKEN) {
    len = h->value_len - 7;
    memcpy(token, h->value + 7, len);
  } else if (http_query_param(req, "token", token, sizeof(token))) {
    len = strlen(token);
  }
  if (len == 0) {
    deny(req, 401, "missing_token", "a JWT is required (Authorization: Bearer, or ?token=)", &auth_counters.missing);
    return false;
  }
  const char *err = NULL;
  if (jwt_verify(token, len, cfg->jwt_secret, strlen(cfg->jwt_secret), (int64_t)time(NULL), claims, &err) != 0) {
    bool expired = err && !strcmp(err, "expired");
    char msg[64];
    snprintf(msg, sizeof(msg), "invalid token: %s", err ? err : "rejected");
    deny(req, 401, expired ? "token_expired" : "invalid_token", msg, expired ? &auth_counters.expired : &auth_counters.invalid);
    memset(claims, 0, sizeof(*claims));
    return false;
  }
  auth_counters.ok++;
  return true;
}

/* A pattern refused is logged: a client asking for more than its token
 * covers is worth a line. At most one line a second, the rest counted in
 * the next line's "suppressed" (and all of them in /status). */
static void log_pattern_denied(const char *pattern) {
  static time_t last;
  static uint64_t suppressed;
  time_t now = time(NULL);
  if (now == last) {
    suppressed++;
    return;
  }
  td_logline *l = log_begin(TD_LOG_WARN, "subscriber_pattern_denied");
  if (l) {
    log_strn(l, "pattern", pattern, strnlen(pattern, TD_SYMBOL_MAX + 1));
    log_int(l, "suppressed", (int64_t)suppressed);
    log_end(l);
  }
  last = now;
  suppressed = 0;
}

/* A pattern ("*", "BRK.*") is allowed by a claim that covers all it can
 * match: "*", or a prefix pattern whose prefix starts the pattern's
 * ("BRK.*" allows "BRK.*" and "BRK.A*", not "BRK*" nor "*"). Read as a
 * name, the pattern passes jwt_allows_symbol exactly then: a claim's
 * prefix is a symbol's start, which has no '*'. An exact claim allows no
 * pattern. */
bool auth_symbol_allowed(const jwt_claims *claims, const char *symbol) {
  if (claims->all_symbols) return true;
  if (jwt_allows_symbol(claims, symbol)) return true;
  auth_counters.forbidden_symbol++;
  if (strchr(symbol, '*')) {
    auth_counters.forbidden_pattern++;
    log_pattern_denied(symbol);
  }
  return false;
}

/* ---- the stream layer's view: a grant per session --------------------------- */

static bool access_admit(td_request *req, bool websocket, void **grant) {
  jwt_claims *claims = malloc(sizeof(*claims));
  if (!claims) {
    http_error(req, 500, "internal", "out of memory", NULL);
    return false;
  }
  if (!auth_subscriber(req, websocket, claims)) {
    free(claims);
    return false;
  }
  *grant = claims;
  return true;
}

static bool access_allows(const void *grant, const char *symbol) { return auth_symbol_allowed(grant, symbol); }

static void access_release(void *grant) {
  if (!grant) return;
  jwt_claims_free(grant);
  free(grant);
}

const td_stream_access auth_stream_access = {access_admit, access_allows, access_release};
