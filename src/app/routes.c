/* tickerd's whole HTTP API in one table: the server dispatches through it
 * (http/router.c matches), /metrics labels by its names, and GET / lists it. */
#include "routes.h"

#include "app/api.h"

static const td_route routes[] = {
  {ROUTE_GET, "/", api_root, "root"},
  {ROUTE_GET, "/hello", api_hello, "hello"},
  {ROUTE_GET, "/status", api_status, "status"},
  {ROUTE_GET, "/healthz", api_healthz, "healthz"},
  {ROUTE_GET, "/readyz", api_readyz, "readyz"},
  {ROUTE_GET, "/metrics", api_metrics, "metrics"},
  {ROUTE_GET, "/tasks", api_tasks_list, "tasks"},
  {ROUTE_GET, "/tasks/{id}", api_task_get, "task"},
  {ROUTE_GET, "/dashboard", api_dashboard, "dashboard"},
  {ROUTE_GET, "/dashboard/{file...}", api_dashboard, "dashboard_asset"},
  {ROUTE_GET, "/quotes", api_quotes_list, "quotes"},
  {ROUTE_POST, "/quotes", api_quotes_post, "quotes_ingest"},
  {ROUTE_GET, "/quotes/{symbol}", api_quote_get, "quote"},
  {ROUTE_GET, "/quotes/{symbol}/history", api_quote_history, "quote_history"},
  {ROUTE_GET, "/candles/{symbol}", api_candles_get, "candles"},
  {ROUTE_GET, "/ws", api_ws, "ws"},
  {ROUTE_GET, "/stream", api_stream, "stream"},
};

const td_route *app_routes(int *count) {
  *count = (int)(sizeof(routes) / sizeof(routes[0]));
  return routes;
}

