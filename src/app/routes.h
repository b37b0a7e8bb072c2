/* The route table (routes.c). */
#ifndef TD_ROUTES_H
#define TD_ROUTES_H

#include "http/router.h"

const td_route *app_routes(int *count);

#endif
