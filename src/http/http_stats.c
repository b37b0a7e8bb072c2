/* The HTTP layer's counters, kept where responses are made. */
#include "http/http_stats.h"

td_http_stats http_stats;
td_http_route_stats http_route_stats;

const double http_latency_bounds[HTTP_LATENCY_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                          0.01,   0.025,   0.05,   0.1,   0.5,    1};

void http_stats_observe(int route_index, int status, uint64_t duration_ns) {
  td_http_route_stats *m = &http_route_stats;
  int cls = status / 100;
  if (cls < 1 || cls > 5) cls = 0;
  if (cls) http_stats.responses[cls]++;
  int row = route_index >= 0 && route_index < HTTP_STATS_MAX_ROUTES ? route_index : HTTP_STATS_MAX_ROUTES;
  m->by_route_class[row][cls]++;
  double s = (double)duration_ns / 1e9;
  size_t b = 0;
  while (b < HTTP_LATENCY_BUCKETS && s > http_latency_bounds[b]) b++;
  m->buckets[b]++;
  m->latency_sum += s;
  m->latency_count++;
}
