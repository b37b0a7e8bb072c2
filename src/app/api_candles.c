/* GET /candles/{symbol}?tf=1m&limit=300: the bars this instance built,
 * oldest first, for charts (the in-progress bar last, "closed": false). */
#include <stdlib.h>
#include <string.h>

#include "app/api.h"
#include "app/app.h"
#include "base/jsonw.h"
#include "market/candle_pub.h"
#include "market/publisher.h"
#include "stream/candle_fan.h"

/* Without ?tf: the timeframe a chart opens with. */
#define API_CANDLES_DEFAULT_TF "1m"

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
  candle_bar *bars = malloc((size_t)limit * sizeof(*bars));
  if (!bars) {
    http_error(req, 500, "internal", "out of memory", NULL);
    return;
  }
  int n = candle_history(e, sym, strlen(sym), k, (uint32_t)limit, bars);
  if (n < 0) {
    free(bars);
    http_error(req, 404, "unknown_symbol", "no bars for this symbol", NULL);
    return;
  }
  const char *tf_name = candle_tf_name(e, k);
  jsonw w;
  jw_init(&w, (size_t)n * CANDLE_JSON_MAX + 128);
  jw_object(&w, NULL);
  jw_str(&w, "symbol", sym);
  jw_str(&w, "tf", tf_name);
  JW_U64(&w, "count", (uint64_t)n);
  jw_array(&w, "bars");
  for (int i = 0; i < n; i++) {
    char json[CANDLE_JSON_MAX];
    jw_raw(&w, NULL, json, candle_pub_bar_json(json, sym, strlen(sym), tf_name, &bars[i]));
  }
  jw_end(&w);
  jw_end(&w);
  free(bars);
  if (w.failed) http_error(req, 500, "internal", "out of memory", NULL);
  else http_respond(req, 200, "application/json", w.p, w.len, NULL);
  jw_free(&w);
}

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
    JW_U64(w, "refused", st.refused);
    JW_U64(w, "closed", st.closed);
    JW_U64(w, "bars_sent", ps.bars);
    JW_U64(w, "bars_refused", ps.refused);
    struct pub_stats rs;
    if (candle_pub_publisher_stats(app->candles, &rs)) {   /* its own Redis connection */
      JW_OBJECT(w, "publisher");
      JW_STR(w, "state", rconn_state_name(rs.state));
      JW_U64(w, "published", rs.published);
      JW_U64(w, "conflated", rs.conflated);
      JW_U64(w, "dropped", rs.dropped);
      JW_U64(w, "errors", rs.errors);
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
