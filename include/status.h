/* /status: one JSON document assembled from every module's counters, and
 * the readiness rule shared by /readyz. */
#ifndef TD_STATUS_H
#define TD_STATUS_H

#include <jansson.h>
#include <stdbool.h>

#include "app.h"

json_t *status_json(td_app *app);
/* Ready when Redis (and the upstream feed, when configured) is connected. */
bool status_ready(td_app *app, const char **why);
/* Resident set size in bytes, from /proc/self/statm. */
long status_rss_bytes(void);

#endif
