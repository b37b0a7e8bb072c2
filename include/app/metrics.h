/* Prometheus metrics (GET /metrics). Counters live in their modules; the
 * only state kept here is per-route request counts and the latency
 * histogram, fed by http_respond. */
#ifndef TD_METRICS_H
#define TD_METRICS_H

#include <stdint.h>

void metrics_observe(int route_index, int status, uint64_t duration_ns);

#endif
