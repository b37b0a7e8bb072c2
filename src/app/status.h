/* /status: one JSON document assembled from every module's counters, and
 * the readiness rule shared by /readyz. */
#ifndef TD_STATUS_H
#define TD_STATUS_H

#include <stdbool.h>

#include "app/app.h"
#include "base/jsonw.h"

/* Writes the /status document. */
void status_write(td_app *app, jsonw *w);
/* Ready when Redis (and the upstream feed, on the lease holder) is connected. */
bool status_ready(td_app *app, const char **why);
/* "holder" or "standby" of the upstream lease; "none" without a feed. */
const char *status_role(const td_app *app);
/* Resident set size in bytes, from /proc/self/statm. */
long status_rss_bytes(void);

#endif
