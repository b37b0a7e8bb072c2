/* GET /candles/{symbol}?tf=1m&limit=300: bars oldest first, for charts
 * (the in-progress bar last, "closed": false). From this instance's engine
 * when it builds bars (the lease holder) and has the symbol; otherwise (a
 * standby, one started late, or a new holder that never saw the symbol)
 * from Redis, where the holder keeps them (market/candle_store.h). */
#include <stdlib.h>
#include <string.h>

#include "app/api.h"
#include "app/app.h"
#include "base/jsonw.h"
#include "base/log.h"
#include "market/candle_pub.h"
#include "market/candle_store.h"
#include "market/pipeline.h"
#include "stream/candle_fan.h"

/* Without ?tf: the timeframe a chart opens with. */
#define API_CANDLES_DEFAULT_TF "1m"

/* A read from Redis for a deferred request. */
typedef struct {
  td_request *req;
  cstore_read *read;
  char sym[TD_SYMBOL_MAX + 1];
  char tf[CANDLE_TF_NAME_MAX + 1];
} candles_waiter;

/* {"symbol","tf","count","bars":[..]} with the bars already in JSON. */
static void respond_bars(td_request *req, const char *sym, const char *tf, const char *const *bars,
                         const size_t *lens, size_t n) {
  jsonw w;
  jw_init(&w, n * CANDLE_JSON_MAX + 128);
  jw_object(&w, NULL);
  jw_str(&w, "symbol", sym);
  jw_str(&w, "tf", tf);
  JW_U64(&w, "count", (uint64_t)n);
  jw_array(&w, "bars");
  for (size_t i = 0; i < n; i++) jw_raw(&w, NULL, bars[i], lens[i]);
  jw_end(&w);
  jw_end(&w);
  if (w.failed) http_error(req, 500, "internal", "out of memory", NULL);
  else http_respond(req, 200, "application/json", w.p, w.len, NULL);
  jw_free(&w);
}

static void respond_unavailable(td_request *req) {
  http_error(req, 503, "candles_unavailable",
             "the bars are built by another instance and Redis, where it keeps them, did not answer; retry later",
             "Retry-After: 1\r\n");
}

static void on_stored(void *ud, bool ok, const char *const *bars, const size_t *lens, size_t n) {
  candles_waiter *w = ud;
  td_request *req = w->req;
  if (!ok) respond_unavailable(req);
  else if (n == 0) http_error(req, 404, "unknown_symbol", "no bars for this symbol", NULL);
  else respond_bars(req, w->sym, w->tf, bars, lens, n);
  free(w);
}

static void on_client_gone(td_request *req, void *data) {
  candles_waiter *w = data;
  cstore_read_cancel(w->read);
  free(w);
}

/* The bars as the holder stored them in Redis. */
static void answer_stored(td_request *req, cstore *store, const char *sym, const char *tf, long limit) {
  char channel[CANDLE_CHANNEL_MAX];
  int n = snprintf(channel, sizeof(channel), CANDLE_CHANNEL_PREFIX ":%s:%s", tf, sym);
  candles_waiter *w = calloc(1, sizeof(*w));
  if (w) {
    w->req = req;
    snprintf(w->sym, sizeof(w->sym), "%s", sym);
    snprintf(w->tf, sizeof(w->tf), "%s", tf);
    w->read = cstore_read_start(store, channel, (size_t)n, (uint32_t)limit, on_stored, w);
  }
  if (!w || !w->read) {
    free(w);
    respond_unavailable(req);
    return;
  }
  http_defer(req, on_client_gone, w);
}

/* The bars of this instance's engine; false when it has none of sym. */
static bool answer_local(td_request *req, const candle_engine *e, const char *sym, int k, long limit) {
  candle_bar *bars = malloc((size_t)limit * sizeof(*bars));
  char *text = malloc((size_t)limit * CANDLE_JSON_MAX);
  const char **ptrs = malloc((size_t)limit * sizeof(*ptrs));
  size_t *lens = malloc((size_t)limit * sizeof(*lens));
  int n = bars && text && ptrs && lens ? candle_history(e, sym, strlen(sym), k, (uint32_t)limit, bars) : -2;
  const char *tf_name = candle_tf_name(e, k);
  for (int i = 0; i < n; i++) {
    ptrs[i] = text + (size_t)i * CANDLE_JSON_MAX;
    lens[i] = candle_pub_bar_json(text + (size_t)i * CANDLE_JSON_MAX, sym, strlen(sym), tf_name, &bars[i]);
  }
  if (n == -2) http_error(req, 500, "internal", "out of memory", NULL);
  else if (n >= 0) respond_bars(req, sym, tf_name, ptrs, lens, (size_t)n);
  free(bars);
  free(text);
  free(ptrs);
  free(lens);
  return n != -1;
}

void api_candles_get(td_request *req) {
  td_app *app = req_app(req);
  char sym[TD_SYMBOL_MAX + 1], tf[CANDLE_TF_NAME_MAX + 1];
  if (!api_symbol_param(req, sym)) return;
  if (!app->candles) {
    http_error(req, 404, "candles_off", "this server builds no candles (--candles false)", NULL);
    return;
  }
  const candle_engine *e = candle_pub_engine(app->candles);
  if (!http_query_param(req, "tf", tf, sizeof(tf))) strcpy(tf, API_CANDLES_DEFAULT_TF);
  int k = candle_tf_find(e, tf, strlen(tf));
  if (k < 0) {
    http_error(req, 400, "bad_timeframe", "tf must be one of --candle-timeframes", NULL);
    return;
  }
  long limit = (long)candle_history_max(e);
  if (http_query_int(req, "limit", 1, (long)candle_history_max(e), &limit) < 0) {
    http_error(req, 400, "bad_limit", "limit must be from 1 to the bars kept (300)", NULL);
    return;
  }
  cstore *store = candle_pub_store(app->candles);
  if (store && !pipeline_aggregating(app->pipeline)) {
    answer_stored(req, store, sym, candle_tf_name(e, k), limit);
    return;
  }
  if (answer_local(req, e, sym, k, limit)) return;
  if (store) answer_stored(req, store, sym, candle_tf_name(e, k), limit);
  else http_error(req, 404, "unknown_symbol", "no bars for this symbol", NULL);
}

/* Whether this instance builds bars now (candle_fan_set_store's `local`). */
bool api_candles_local(void *app) { return pipeline_aggregating(((td_app *)app)->pipeline); }

/* The "candles" block of /status: what the engine built and refused, and
 * what this instance streamed to its clients. */
void api_candles_status(jsonw *w, td_app *app) {
  JW_OBJECT(w, "candles");
  jw_bool(w, "enabled", app->candles != NULL);
  if (app->candles) {
    candle_stats st;
    candle_pub_stats ps;
    candle_get_stats(candle_pub_engine(app->candles), &st);
    candle_pub_get_stats(app->candles, &ps);
    JW_U64(w, "symbols", st.symbols);
    JW_U64(w, "trades", st.trades);
    JW_U64(w, "quotes", st.quotes);
    JW_U64(w, "late", st.late);
    JW_OBJECT(w, "bad");
    for (int r = 0; r < CANDLE_BAD_COUNT; r++) jw_u64(w, candle_bad_name((candle_bad_reason)r), st.bad[r]);
    jw_end(w);
    JW_U64(w, "adjusted", st.adjusted);
    JW_U64(w, "adjust_late", st.adjust_late);
    JW_U64(w, "adjust_unmatched", st.adjust_unmatched);
    JW_U64(w, "adjust_unknown", st.adjust_unknown);
    JW_U64(w, "refused", st.refused);
    JW_U64(w, "closed", st.closed);
    JW_U64(w, "bars_sent", ps.bars);
    JW_U64(w, "bars_refused", ps.refused);
    cstore *store = candle_pub_store(app->candles);
    if (store) {   /* its own Redis connection: publishes and keeps the bars */
      cstore_stats cs;
      cstore_get_stats(store, &cs);
      JW_OBJECT(w, "store");
      jw_bool(w, "connected", cs.connected);
      JW_U64(w, "sent", cs.sent);
      JW_U64(w, "stored", cs.stored);
      JW_U64(w, "errors", cs.errors);
      JW_U64(w, "queued", cs.queued);
      JW_U64(w, "resent", cs.resent);
      JW_U64(w, "waiting", cs.waiting);
      JW_U64(w, "dropped", cs.dropped);
      JW_U64(w, "skipped", cs.skipped);
      JW_U64(w, "reads", cs.reads);
      JW_U64(w, "read_failures", cs.read_failures);
      jw_end(w);
    }
    JW_U64(w, "memory_bytes", st.bytes);
  }
  candle_fan_stats fs = {0};
  if (app->candle_fan) candle_fan_get_stats(app->candle_fan, &fs);
  JW_U64(w, "stream_channels", fs.channels);
  JW_U64(w, "stream_subscriptions", fs.subscriptions);
  JW_U64(w, "stream_messages", fs.messages);
  JW_U64(w, "stream_deliveries", fs.deliveries);
  JW_U64(w, "stream_bad_messages", fs.bad_messages);
  JW_U64(w, "stream_dropped", fs.dropped);
  jw_end(w);
}
