/* The HTTP layer's own counters: connections, timeouts, responses by route
 * and status class, and the latency histogram. /status and /metrics only
 * read them. */
#ifndef TD_HTTP_STATS_H
#define TD_HTTP_STATS_H

#include <stddef.h>
#include <stdint.h>

/* Connection and request counters. */
typedef struct {
  uint64_t accepted;
  uint64_t open;
  uint64_t open_peak;         /* most open at once since the app last reset it (malloc_trim) */
  uint64_t rejected_full;     /* 503: too many connections */
  uint64_t requests;
  uint64_t responses[6];      /* by status class: [2] = 2xx ... */
  uint64_t bad_requests;      /* 400 from the parser or our checks */
  uint64_t too_large;         /* 413 and 431 */
  uint64_t header_timeouts;
  uint64_t idle_timeouts;
  uint64_t write_timeouts;
  uint64_t backpressure_pauses;
  uint64_t taken_over;        /* WebSocket / SSE */
  /* System calls that wrote to WebSocket / SSE clients: each sendmsg of the
   * flush (EAGAIN included: it is a system call too) and each uv_write
   * handed the remainder (libuv makes at least one writev for it). Against
   * the hub's deliveries it shows how many messages one write carries. */
  uint64_t stream_sends;
  /* Flushes that conflated every client first (conn_conflate_next_flush),
   * and the queued messages those dropped. */
  uint64_t stream_overload_flushes;
  uint64_t stream_overload_conflated;
} td_http_stats;

extern td_http_stats http_stats;

/* Routes counted one by one; a longer table shares the "none" row. */
#define HTTP_STATS_MAX_ROUTES 32
/* Request latency buckets (upper bounds in seconds; +Inf is implicit). */
#define HTTP_LATENCY_BUCKETS 12
extern const double http_latency_bounds[HTTP_LATENCY_BUCKETS];

typedef struct {
  uint64_t by_route_class[HTTP_STATS_MAX_ROUTES + 1][6]; /* last row: no route (404, parse errors) */
  uint64_t buckets[HTTP_LATENCY_BUCKETS + 1];
  double latency_sum;     /* seconds */
  uint64_t latency_count;
} td_http_route_stats;

extern td_http_route_stats http_route_stats;

/* Counts one response: its status class, its route (the router's index, or
 * -1) and the time since the request was complete. */
void http_stats_observe(int route_index, int status, uint64_t duration_ns);

#endif
