/* GET /quotes/{symbol} when nothing is stored: an asynchronous call to
 * Alpaca's REST API (the seed's "external API from a route" pattern). The
 * request is deferred; the answer is cached by sending it through the one
 * message path, so the next GET (and subscribers) see it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "market/alpaca_rest.h"
#include "app/api.h"
#include "app/app.h"
#include "market/pipeline.h"
#include "market/quote_store.h"

/* With positions in Redis a quote enters the store when the publish
 * script answers: the answer waits for it, checking this often, at most
 * this long (Redis away: 502). */
#define FALLBACK_POSITION_POLL_MS 1
#define FALLBACK_POSITION_WAIT_MS 2000

typedef struct {
  td_request *req;
  arest_wait *wait;
  char symbol[TD_SYMBOL_MAX + 1];
  uv_timer_t timer;           /* waiting for the position; freed in its close callback */
  uint64_t waited_ms;
  bool timing;
} fallback;

static void on_timer_closed(uv_handle_t *h) { free(h->data); }

static void fallback_free(fallback *f) {
  if (f->timing) uv_close((uv_handle_t *)&f->timer, on_timer_closed);
  else free(f);
}

/* Answers with the stored quote, if there is one yet. */
static bool answer_stored(fallback *f) {
  qstore_entry e;
  if (!qstore_latest(pipeline_store(req_app(f->req)->pipeline), SMSG_QUOTE, f->symbol, strlen(f->symbol), &e))
    return false;
  http_respond(f->req, 200, "application/json", e.payload->data, e.payload->len, "X-Quote-Source: upstream\r\n");
  return true;
}

static void on_position_poll(uv_timer_t *t) {
  fallback *f = t->data;
  f->waited_ms += FALLBACK_POSITION_POLL_MS;
  if (!answer_stored(f)) {
    if (f->waited_ms < FALLBACK_POSITION_WAIT_MS) return;
    http_error(f->req, 502, "upstream_error", "the upstream quote got no position from Redis in time", NULL);
  }
  fallback_free(f);
}

static void on_answer(void *ud, arest_result res, const char *json, size_t len) {
  fallback *f = ud;
  td_request *req = f->req;
  if (res != AREST_OK) {
    const char *msg = res == AREST_NOT_FOUND ? "no quote for this symbol, here or upstream"
                    : res == AREST_TIMEOUT   ? "the upstream quote API did not answer in time"
                                             : "the upstream quote API failed";
    http_error(req, arest_http_status(res), arest_result_name(res), msg, NULL);
    free(f);
    return;
  }
  pipeline_result r;
  char err[SMSG_ERR_MAX];
  if (pipeline_batch(req_app(req)->pipeline, json, len, &r, err) != 0 || r.by_kind[SMSG_QUOTE] == 0) {
    http_error(req, 502, "upstream_error", "the upstream quote was not valid", NULL);
  } else if (!answer_stored(f)) {
    f->wait = NULL;
    uv_timer_init(req_app(req)->loop, &f->timer);
    f->timer.data = f;
    f->timing = true;
    uv_timer_start(&f->timer, on_position_poll, FALLBACK_POSITION_POLL_MS, FALLBACK_POSITION_POLL_MS);
    return;
  }
  free(f);
}

static void on_client_gone(td_request *req, void *data) {
  fallback *f = data;
  if (f->wait) arest_cancel(req_app(req)->rest, f->wait);
  fallback_free(f);
}

bool api_quote_fallback(td_request *req, const char *symbol) {
  if (!req_app(req)->rest) return false;
  fallback *f = calloc(1, sizeof(*f));
  if (!f) return false;
  f->req = req;
  strncpy(f->symbol, symbol, TD_SYMBOL_MAX);
  int rc = arest_get(req_app(req)->rest, symbol, on_answer, f, &f->wait);
  if (rc != 0) {
    free(f);
    http_error(req, rc == -EBUSY ? 503 : 400, rc == -EBUSY ? "busy" : "bad_symbol",
               rc == -EBUSY ? "too many upstream look-ups in flight" : "invalid symbol", NULL);
    return true;
  }
  http_defer(req, on_client_gone, f);
  return true;
}
