/* Quote endpoints: POST /quotes (ingest), GET /quotes, /quotes/{symbol},
 * /quotes/{symbol}/history. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/api.h"
#include "app/app.h"
#include "ingest_pace.h"
#include "base/jsonw.h"
#include "base/url.h"
#include "market/pipeline.h"
#include "market/quote_store.h"
#include "market/stream_msg.h"
#include "base/td_limits.h"

/* Bounds of GET /quotes/{symbol}/history?limit= */
#define QUOTES_HISTORY_DEFAULT 300

/* Constant time: the comparison must not tell how much of a guess was right. */
static bool token_ok(const td_request *req, const char *token) {
  const td_header *h = http_header(req, "authorization");
  size_t tlen = strlen(token);
  if (!h || h->value_len != 7 + tlen || strncasecmp(h->value, "Bearer ", 7)) return false;
  return CRYPTO_memcmp(h->value + 7, token, tlen) == 0;
}

void api_quotes_post(td_request *req) {
  td_app *app = req_app(req);
  if (app->cfg->ingest_token && *app->cfg->ingest_token && !token_ok(req, app->cfg->ingest_token)) {
    http_error(req, 401, "unauthorized", "POST /quotes needs 'Authorization: Bearer <ingest token>'",
               "WWW-Authenticate: Bearer realm=\"tickerd\"\r\n");
    return;
  }
  pipeline_result r;
  char err[SMSG_ERR_MAX];
  if (pipeline_batch(app->pipeline, req->body ? req->body : "", req->body_len, &r, err) != 0) {
    http_error(req, 400, "invalid_batch", err, NULL);
    return;
  }
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  JW_U64(&w, "accepted", r.accepted);
  JW_U64(&w, "quotes", r.by_kind[SMSG_QUOTE]);
  jw_object(&w, "by_kind");
  for (int k = 0; k < SMSG_KIND_COUNT; k++)
    if (r.by_kind[k]) jw_u64(&w, smsg_kind_channel((smsg_kind)k), r.by_kind[k]);
  jw_end(&w);
  jw_end(&w);
  if (w.failed) http_error(req, 500, "internal", "out of memory", NULL);
  else pace_respond(app->pace, req, w.p, w.len);
  jw_free(&w);
}

/* GET /quotes and /history answer with the stored payloads byte for byte:
 * parsing them back into jansson and dumping them again printed 275.22 as
 * 275.22000000000003 (jansson's %.17g), unlike the published message. */

void api_quotes_list(td_request *req) {
  qstore *qs = pipeline_store(req_app(req)->pipeline);
  size_t total = qstore_symbols(qs, SMSG_QUOTE, NULL, 0);
  const char **syms = calloc(total ? total : 1, sizeof(*syms));
  if (!syms) {
    http_error(req, 500, "internal", "out of memory", NULL);
    return;
  }
  size_t n = qstore_symbols(qs, SMSG_QUOTE, syms, total);
  if (n > total) n = total;
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  JW_U64(&w, "count", n);
  jw_object(&w, "quotes");
  for (size_t i = 0; i < n; i++) {
    qstore_entry e;
    if (qstore_latest(qs, SMSG_QUOTE, syms[i], strlen(syms[i]), &e)) jw_raw(&w, syms[i], e.payload->data, e.payload->len);
  }
  jw_end(&w);
  jw_end(&w);
  free(syms);
  api_respond_jsonw(req, 200, &w, NULL);
}

/* The symbol path parameter, percent-decoded ("BTC%2FUSD" is BTC/USD: a raw
 * '/' would be a path separator) and validated; answers 400 itself when
 * invalid. */
bool api_symbol_param(td_request *req, char out[TD_SYMBOL_MAX + 1]) {
  long n = url_decode(req->params[0], req->param_lens[0], out, TD_SYMBOL_MAX + 1, URL_DECODE_STRICT);
  if (n < 0 || !smsg_symbol_valid(out, (size_t)n)) {
    http_error(req, 400, "bad_symbol", "a symbol is 1-16 of A-Z 0-9 . - / (in a path, / is written %2F)", NULL);
    return false;
  }
  return true;
}

void api_quote_get(td_request *req) {
  char sym[TD_SYMBOL_MAX + 1];
  if (!api_symbol_param(req, sym)) return;
  qstore_entry e;
  if (!qstore_latest(pipeline_store(req_app(req)->pipeline), SMSG_QUOTE, sym, strlen(sym), &e)) {
    if (api_quote_fallback(req, sym)) return;
    http_error(req, 404, "unknown_symbol", "no quote for this symbol yet", NULL);
    return;
  }
  http_respond(req, 200, "application/json", e.payload->data, e.payload->len, NULL);
}

void api_quote_history(td_request *req) {
  char sym[TD_SYMBOL_MAX + 1];
  if (!api_symbol_param(req, sym)) return;
  long limit = QUOTES_HISTORY_DEFAULT;
  if (http_query_int(req, "limit", 1, req_app(req)->cfg->history_size, &limit) < 0) {
    http_error(req, 400, "bad_limit", "limit must be from 1 to --history-size", NULL);
    return;
  }
  if (limit > req_app(req)->cfg->history_size) limit = req_app(req)->cfg->history_size;
  qstore_entry *es = calloc((size_t)limit, sizeof(*es));
  if (!es) {
    http_error(req, 500, "internal", "out of memory", NULL);
    return;
  }
  size_t n = qstore_history(pipeline_store(req_app(req)->pipeline), SMSG_QUOTE, sym, strlen(sym), (size_t)limit,
                            uv_now(req_app(req)->loop), es);
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  jw_str(&w, "symbol", sym);
  JW_U64(&w, "count", n);
  jw_array(&w, "quotes");
  for (size_t i = 0; i < n; i++) jw_raw(&w, NULL, es[i].payload->data, es[i].payload->len);
  jw_end(&w);
  jw_end(&w);
  free(es);
  api_respond_jsonw(req, 200, &w, NULL);
}
