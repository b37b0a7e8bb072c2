/* HTTP handlers, one group per file:
 *   api_core.c    /, /hello, /status, /healthz, /readyz, /tasks, /tasks/{id}
 *   api_quotes.c  POST /quotes, GET /quotes, /quotes/{symbol}, /quotes/{symbol}/history
 *   api_candles.c GET /candles/{symbol}
 *   api_stream.c  /ws (WebSocket) and /stream (SSE), run by stream/
 *   web.c         /dashboard and its assets
 *   metrics.c     /metrics */
#ifndef TD_API_H
#define TD_API_H

#include "base/td_limits.h"
#include "base/jsonw.h"
#include "http/http.h"

/* Answers with the document in w (500 if its writer failed) and frees w. */
void api_respond_jsonw(td_request *req, int status, jsonw *w, const char *extra_headers);

void api_root(td_request *req);
void api_hello(td_request *req);
void api_status(td_request *req);
void api_healthz(td_request *req);
void api_readyz(td_request *req);
void api_tasks_list(td_request *req);
void api_task_get(td_request *req);

void api_quotes_post(td_request *req);
void api_quotes_list(td_request *req);
void api_quote_get(td_request *req);
void api_quote_history(td_request *req);
/* GET /quotes/{symbol} with nothing stored: ask Alpaca's REST API when
 * credentials are set. Returns false when there is no fallback. */
bool api_quote_fallback(td_request *req, const char *symbol);

/* The {symbol} path parameter, percent-decoded and validated; answers 400
 * itself and returns false when it is not a symbol. */
bool api_symbol_param(td_request *req, char out[TD_SYMBOL_MAX + 1]);
void api_candles_get(td_request *req);
/* Whether this instance builds bars now (it holds the upstream lease, or
 * has none): `app` is the td_app. */
bool api_candles_local(void *app);
/* The "candles" block of /status. */
struct td_app;
void api_candles_status(jsonw *w, struct td_app *app);

void api_ws(td_request *req);
void api_stream(td_request *req);
void api_dashboard(td_request *req);
void api_metrics(td_request *req);

#endif
