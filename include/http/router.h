/* The route table: every endpoint of tickerd in one list (router.c), so the
 * whole API is visible in one place. 404 for unknown paths, 405 with Allow
 * for known paths and wrong methods. */
#ifndef TD_ROUTER_H
#define TD_ROUTER_H

#include "http.h"

typedef void (*td_handler)(td_request *req);

typedef struct {
  unsigned methods;       /* ROUTE_GET | ROUTE_POST ... (GET implies HEAD) */
  const char *pattern;    /* "/tasks/{id}": {id} is one segment, {file...} the rest */
  td_handler handler;
  const char *name;       /* for metrics labels */
} td_route;

#define ROUTE_GET  1u
#define ROUTE_POST 2u

void router_dispatch(td_request *req);
/* For /metrics: the table and its size. */
const td_route *router_routes(int *count);

#endif
