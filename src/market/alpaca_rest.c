/* Latest-quote fallback over https_client, one upstream request per symbol
 * in flight, shared by all who ask meanwhile (a pending table with waiter
 * lists). */
#include "market/alpaca_rest.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/https_client.h"
#include "base/log.h"
#include "market/stream_msg.h"
#include "net/tls.h"

struct arest_wait {
  struct arest_wait *next;
  struct pending *p;
  arest_cb cb;
  void *ud;
};

typedef struct pending {
  struct pending *next;
  struct arest *r;
  char symbol[TD_SYMBOL_MAX + 1];
  hcli_req *req;
  arest_wait *waiters; /* in arrival order */
  arest_wait **tail;
  int nwaiters;
  bool delivering;     /* on_http_done is calling the waiters back */
} pending;

struct arest {
  uv_loop_t *loop;
  tls_ctx *ctx;
  char *base;     /* rest URL without a trailing slash */
  char *headers;  /* the credential headers: wiped before free, never logged */
  const char *feed_query; /* "?feed=iex" etc., or "" */
  int timeout_ms;
  pending *pending;
  int npending;
  arest_stats stats;
};

const char *arest_result_name(arest_result res) {
  static const char *names[] = {"ok", "not_found", "timeout", "upstream_error"};
  return (unsigned)res < 4 ? names[res] : "upstream_error";
}

int arest_http_status(arest_result res) {
  static const int codes[] = {200, 404, 504, 502};
  return (unsigned)res < 4 ? codes[res] : 502;
}

const arest_stats *arest_get_stats(const arest *r) { return &r->stats; }

void arest_set_timeout(arest *r, int timeout_ms) {
  r->timeout_ms = timeout_ms > 0 ? timeout_ms : AREST_TIMEOUT_MS;
}

/* ---- converting the answer ------------------------------------------------ */

/* The fields of a v2 quote, in the stream's order after T and S. */
static const char *quote_keys[] = {"bx", "bp", "bs", "ax", "ap", "as", "c", "z", "t"};

static bool quote_empty(json_t *q) {
  if (!json_is_object(q) || json_object_size(q) == 0) return true;
  /* Alpaca answers an unknown or never-quoted symbol with a zero quote. */
  const char *t = json_string_value(json_object_get(q, "t"));
  return !t || !strncmp(t, "0001-", 5);
}

static void count_only(void *ud, const smsg_msg *m) { (void)ud, (void)m; }

/* The stream-format quote (malloc'd), or NULL with *res saying why. */
static char *convert(const char *symbol, const char *body, size_t len, arest_result *res) {
  json_error_t je;
  json_t *doc = json_loadb(body, len, 0, &je);
  json_t *q = doc ? json_object_get(doc, "quote") : NULL;
  if (!json_is_object(doc)) {
    *res = AREST_UPSTREAM_ERROR;
    json_decref(doc);
    return NULL;
  }
  if (quote_empty(q)) {
    *res = AREST_NOT_FOUND;
    json_decref(doc);
    return NULL;
  }
  json_t *out = json_pack("{s:s,s:s}", "T", "q", "S", symbol);
  for (size_t i = 0; out && i < sizeof(quote_keys) / sizeof(quote_keys[0]); i++) {
    json_t *v = json_object_get(q, quote_keys[i]);
    if (v && !json_is_null(v)) json_object_set(out, quote_keys[i], v);
  }
  char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
  json_decref(out);
  json_decref(doc);
  /* What we hand on must be a quote the pipeline accepts. */
  char err[SMSG_ERR_MAX];
  if (!text || smsg_parse_batch(text, strlen(text), count_only, NULL, err) != 1) {
    free(text);
    *res = AREST_UPSTREAM_ERROR;
    return NULL;
  }
  *res = AREST_OK;
  return text;
}

/* ---- the pending table ---------------------------------------------------- */

static pending *find(arest *r, const char *symbol) {
  for (pending *p = r->pending; p; p = p->next)
    if (!strcmp(p->symbol, symbol)) return p;
  return NULL;
}

static void unlink_pending(arest *r, pending *p) {
  for (pending **pp = &r->pending; *pp; pp = &(*pp)->next) {
    if (*pp == p) {
      *pp = p->next;
      r->npending--;
      return;
    }
  }
}

static void free_waiters(pending *p) {
  arest_wait *w = p->waiters;
  while (w) {
    arest_wait *next = w->next;
    free(w);
    w = next;
  }
}

static void log_failure(const char *symbol, int status, const char *err, arest_result res) {
  td_logline *l = log_begin(TD_LOG_WARN, "alpaca_rest_failed");
  if (!l) return;
  log_str(l, "symbol", symbol);
  if (status) log_int(l, "status", status);
  if (err) log_str(l, "error", err);
  log_str(l, "result", arest_result_name(res));
  log_end(l);
}

static void on_http_done(void *ud, int status, const char *body, size_t len, const char *err) {
  pending *p = ud;
  arest *r = p->r;
  /* Out of the table first: a callback may ask for the same symbol again. */
  unlink_pending(r, p);
  arest_result res;
  char *json = NULL;
  if (status == 200) json = convert(p->symbol, body, len, &res);
  else if (status == 404) res = AREST_NOT_FOUND;
  else if (!status && err && !strcmp(err, "timeout")) res = AREST_TIMEOUT;
  else res = AREST_UPSTREAM_ERROR;
  if (res == AREST_UPSTREAM_ERROR || res == AREST_TIMEOUT) log_failure(p->symbol, status, err, res);
  /* A callback may cancel a later waiter of this list: arest_cancel then
   * only clears its cb, and everything is freed after the loop. */
  p->delivering = true;
  for (arest_wait *w = p->waiters; w; w = w->next) {
    if (!w->cb) continue;
    r->stats.results[res]++;
    w->cb(w->ud, res, json, json ? strlen(json) : 0);
  }
  free(json);
  free_waiters(p);
  free(p);
}

static int start_request(arest *r, pending *p) {
  /* A '/' in a symbol (BTC/USD style) must not split the path. */
  char sym[3 * TD_SYMBOL_MAX + 1], url[HCLI_MAX_PATH];
  size_t n = 0;
  for (const char *s = p->symbol; *s; s++) {
    if (*s == '/') {
      memcpy(sym + n, "%2F", 3);
      n += 3;
    } else {
      sym[n++] = *s;
    }
  }
  sym[n] = 0;
  snprintf(url, sizeof(url), "%s/v2/stocks/%s/quotes/latest%s", r->base, sym, r->feed_query);
  return hcli_get(r->loop, r->ctx, url, r->headers, AREST_MAX_BODY, r->timeout_ms, on_http_done, p,
                  &p->req);
}

int arest_get(arest *r, const char *symbol, arest_cb cb, void *ud, arest_wait **out) {
  *out = NULL;
  if (!symbol || !smsg_symbol_valid(symbol, strlen(symbol))) return -EINVAL;
  pending *p = find(r, symbol);
  if (p && p->nwaiters >= AREST_MAX_WAITERS) goto busy;
  if (!p && r->npending >= AREST_MAX_PENDING) goto busy;
  arest_wait *w = calloc(1, sizeof(*w));
  if (!w) return -ENOMEM;
  w->cb = cb;
  w->ud = ud;
  if (p) {
    r->stats.shared++;
  } else {
    p = calloc(1, sizeof(*p));
    if (!p) {
      free(w);
      return -ENOMEM;
    }
    snprintf(p->symbol, sizeof(p->symbol), "%s", symbol);
    p->r = r;
    p->tail = &p->waiters;
    int rv = start_request(r, p);
    if (rv < 0) {
      free(p);
      free(w);
      return rv;
    }
    p->next = r->pending;
    r->pending = p;
    r->npending++;
    r->stats.upstream++;
  }
  w->p = p;
  *p->tail = w;
  p->tail = &w->next;
  p->nwaiters++;
  r->stats.requests++;
  *out = w;
  return 0;
busy:
  r->stats.busy++;
  return -EBUSY;
}

void arest_cancel(arest *r, arest_wait *w) {
  pending *p = w->p;
  if (p->delivering) {
    w->cb = NULL;
    return;
  }
  arest_wait **pp = &p->waiters;
  while (*pp && *pp != w) pp = &(*pp)->next;
  if (!*pp) return;
  *pp = w->next;
  if (p->tail == &w->next) p->tail = pp;
  p->nwaiters--;
  free(w);
  if (p->nwaiters > 0) return;
  /* Nobody waits any more: stop the upstream request too. */
  unlink_pending(r, p);
  hcli_cancel(p->req);
  free(p);
}

/* ---- setup ---------------------------------------------------------------- */

static bool header_safe(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return false;
  return true;
}

int arest_new(uv_loop_t *loop, const alpaca_opts *cfg, arest **out, const char **err) {
  *out = NULL;
  const char *key = cfg->key_id, *secret = cfg->secret_key;
  if (!key || !*key || !secret || !*secret) {
    *err = "the REST fallback needs the environment variables APCA_API_KEY_ID and APCA_API_SECRET_KEY";
    return -EINVAL;
  }
  if (!header_safe(key) || !header_safe(secret)) {
    *err = "APCA_API_KEY_ID / APCA_API_SECRET_KEY hold control characters";
    return -EINVAL;
  }
  hcli_url u;
  const char *base = cfg->rest_url;
  if (!base || hcli_url_parse(base, &u) < 0 || u.websocket) {
    *err = "--alpaca-rest-url must be an http:// or https:// URL";
    return -EINVAL;
  }
  arest *r = calloc(1, sizeof(*r));
  if (!r) return -ENOMEM;
  r->loop = loop;
  r->timeout_ms = AREST_TIMEOUT_MS;
  r->base = strdup(base);
  size_t hlen = strlen(key) + strlen(secret) + 64;
  r->headers = malloc(hlen);
  if (!r->base || !r->headers) {
    arest_free(r);
    return -ENOMEM;
  }
  size_t bl = strlen(r->base);
  while (bl > 0 && r->base[bl - 1] == '/') r->base[--bl] = 0;
  snprintf(r->headers, hlen, "APCA-API-KEY-ID: %s\r\nAPCA-API-SECRET-KEY: %s\r\n", key, secret);
  const char *feed = cfg->feed ? cfg->feed : "";
  r->feed_query = !strcmp(feed, "iex")           ? "?feed=iex"
                  : !strcmp(feed, "sip")         ? "?feed=sip"
                  : !strcmp(feed, "delayed_sip") ? "?feed=delayed_sip"
                                                 : "";
  int rv = tls_ctx_new(&r->ctx, cfg->ca_file, err);
  if (rv < 0) {
    arest_free(r);
    return rv;
  }
  *out = r;
  return 0;
}

void arest_free(arest *r) {
  if (!r) return;
  while (r->pending) {
    pending *p = r->pending;
    r->pending = p->next;
    hcli_cancel(p->req);
    free_waiters(p);
    free(p);
  }
  if (r->headers) {
    explicit_bzero(r->headers, strlen(r->headers));
    free(r->headers);
  }
  free(r->base);
  tls_ctx_free(r->ctx);
  free(r);
}
