/* Route matching: a request's method and path against a table of routes the
 * caller gives (the application's is app/routes.c). 404 for unknown paths,
 * 405 with Allow for known paths and wrong methods. */
#ifndef TD_ROUTER_H
#define TD_ROUTER_H

#include "http/http.h"

typedef void (*td_handler)(td_request *req);

typedef struct td_route {
  unsigned methods;       /* ROUTE_GET | ROUTE_POST ... (GET implies HEAD) */
  const char *pattern;    /* "/tasks/{id}": {id} is one segment, {file...} the rest */
  td_handler handler;
  const char *name;       /* for metrics labels */
} td_route;

#define ROUTE_GET  1u
#define ROUTE_POST 2u

/* Runs the handler of the first route that matches, with req->route_index
 * set to its index, or answers 404/405 itself. */
void router_dispatch(const td_route *routes, int n_routes, td_request *req);

#endif
