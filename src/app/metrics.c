/* GET /metrics: the Prometheus text exposition format (0.0.4), written from
 * the same counters /status reports. Every metric is listed in README. */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "market/alpaca.h"
#include "app/api.h"
#include "app/app.h"
#include "app/auth.h"
#include "stream/hub.h"
#include "market/pipeline.h"
#include "market/publisher.h"
#include "market/quote_store.h"
#include "routes.h"
#include "http/server.h"
#include "status.h"
#include "market/subscriber.h"
#include "redis/lease.h"
#include "app/task.h"
#include "stream/ws_session.h"
#include "http/ws_deflate.h"

/* Enough for every metric with every label. */
#define METRICS_BUF_INITIAL (32 * 1024)

typedef struct {
  char *p;
  size_t len, cap;
} out_t;

static void emit(out_t *o, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (o->len + (size_t)n < o->cap) {
      o->len += (size_t)n;
      return;
    }
    size_t cap = o->cap * 2;
    char *np = realloc(o->p, cap);
    if (!np) return;
    o->p = np;
    o->cap = cap;
  }
}

static void head(out_t *o, const char *name, const char *type, const char *help) {
  emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(out_t *o, const char *name, const char *type, const char *help, double v) {
  head(o, name, type, help);
  emit(o, "%s %.17g\n", name, v);
}

static void http_metrics(out_t *o) {
  int n;
  const td_route *routes = app_routes(&n);
  const td_http_route_stats *m = &http_route_stats;
  static const char *classes[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
  head(o, "tickerd_http_requests_total", "counter", "HTTP responses by route and status class");
  for (int r = 0; r <= n && r <= HTTP_STATS_MAX_ROUTES; r++) {
    int row = r == n ? HTTP_STATS_MAX_ROUTES : r;
    for (int c = 0; c < 6; c++)
      if (m->by_route_class[row][c])
        emit(o, "tickerd_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n", r == n ? "none" : routes[r].name,
             classes[c], (unsigned long long)m->by_route_class[row][c]);
  }
  head(o, "tickerd_http_request_duration_seconds", "histogram", "time from a complete request to its queued response");
  uint64_t cum = 0;
  for (size_t b = 0; b < HTTP_LATENCY_BUCKETS; b++) {
    cum += m->buckets[b];
    emit(o, "tickerd_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n", http_latency_bounds[b], (unsigned long long)cum);
  }
  cum += m->buckets[HTTP_LATENCY_BUCKETS];
  emit(o, "tickerd_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
  emit(o, "tickerd_http_request_duration_seconds_sum %.9f\ntickerd_http_request_duration_seconds_count %llu\n",
       m->latency_sum, (unsigned long long)m->latency_count);
  one(o, "tickerd_http_connections", "gauge", "open HTTP connections (including WebSocket and SSE)", (double)http_stats.open);
  one(o, "tickerd_http_connections_rejected_total", "counter", "connections refused at --max-connections",
      (double)http_stats.rejected_full);
  one(o, "tickerd_http_timeouts_total", "counter", "connections closed by the header, idle or write timeout",
      (double)(http_stats.header_timeouts + http_stats.idle_timeouts + http_stats.write_timeouts));
}

static void task_metrics(out_t *o, td_app *app) {
  task_stats t;
  tasks_stats(app->tasks, &t);
  head(o, "tickerd_tasks", "gauge", "background tasks now, by state");
  emit(o, "tickerd_tasks{state=\"pending\"} %llu\ntickerd_tasks{state=\"running\"} %llu\n"
          "tickerd_tasks{state=\"retained\"} %llu\n",
       (unsigned long long)t.pending, (unsigned long long)t.running, (unsigned long long)t.retained);
  head(o, "tickerd_tasks_total", "counter", "background tasks by outcome");
  emit(o, "tickerd_tasks_total{state=\"completed\"} %llu\ntickerd_tasks_total{state=\"failed\"} %llu\n"
          "tickerd_tasks_total{state=\"cancelled\"} %llu\ntickerd_tasks_total{state=\"rejected\"} %llu\n",
       (unsigned long long)t.completed, (unsigned long long)t.failed, (unsigned long long)t.cancelled,
       (unsigned long long)t.rejected);
}

static void quote_metrics(out_t *o, td_app *app) {
  pipeline_stats p;
  pipeline_get_stats(app->pipeline, &p);
  head(o, "tickerd_messages_received_total", "counter", "valid market-data messages received, by kind");
  for (int k = 0; k < SMSG_KIND_COUNT; k++)
    emit(o, "tickerd_messages_received_total{kind=\"%s\"} %llu\n", smsg_kind_channel((smsg_kind)k),
         (unsigned long long)p.received[k]);
  head(o, "tickerd_messages_skipped_total", "counter", "feed items skipped as invalid, by reason");
  for (int r = 0; r < SMSG_SKIP_COUNT; r++)
    emit(o, "tickerd_messages_skipped_total{reason=\"%s\"} %llu\n", smsg_skip_name((smsg_skip_reason)r),
         (unsigned long long)p.stream.skipped[r]);
  struct pub_stats s;
  bool pub_up = pipeline_publisher_stats(app->pipeline, &s);
  one(o, "tickerd_redis_published_total", "counter", "PUBLISH replies received", (double)s.published);
  one(o, "tickerd_redis_conflated_total", "counter", "messages replaced in the outbox by a newer one", (double)s.conflated);
  one(o, "tickerd_redis_dropped_total", "counter", "messages dropped (outbox full or closing)", (double)s.dropped);
  one(o, "tickerd_redis_errors_total", "counter", "PUBLISH error replies and PUBLISH lost with a connection", (double)s.errors);
  one(o, "tickerd_redis_last_errors_total", "counter", "HSET of latest quotes failed or lost with a connection",
      (double)s.last_errors);
  one(o, "tickerd_redis_inflight", "gauge", "PUBLISH commands awaiting a reply", (double)s.inflight);
  one(o, "tickerd_redis_outbox", "gauge", "channels waiting in the outbox", (double)s.outbox);
  struct sub_stats ss;
  sub_stats(app->sub, &ss);
  head(o, "tickerd_redis_up", "gauge", "1 when the Redis connection is ready");
  emit(o, "tickerd_redis_up{conn=\"publisher\"} %d\ntickerd_redis_up{conn=\"subscriber\"} %d\n", pub_up,
       ss.state == RCONN_READY);
  head(o, "tickerd_redis_reconnects_total", "counter", "Redis reconnects");
  emit(o, "tickerd_redis_reconnects_total{conn=\"publisher\"} %llu\ntickerd_redis_reconnects_total{conn=\"subscriber\"} %llu\n",
       (unsigned long long)s.reconnects, (unsigned long long)ss.reconnects);
}

static void upstream_metrics(out_t *o, td_app *app) {
  if (!app->alpaca) return;
  alpaca_stats a;
  alpaca_get_stats(app->alpaca, ALPACA_STREAM_DATA, &a);
  one(o, "tickerd_upstream_up", "gauge", "1 while the Alpaca stream is subscribed and streaming",
      a.state == ALPACA_STREAMING);
  one(o, "tickerd_upstream_reconnects_total", "counter", "Alpaca stream reconnects", (double)a.reconnects);
  one(o, "tickerd_upstream_messages_total", "counter", "data messages from the Alpaca stream", (double)a.messages_total);
  one(o, "tickerd_upstream_slow_client_total", "counter", "Alpaca 407 slow-client warnings", (double)a.slow_client);
  head(o, "tickerd_upstream_refused_total", "counter",
       "Alpaca refusals: 406 connection limit exceeded (auth), 429 too many requests (upgrade)");
  emit(o, "tickerd_upstream_refused_total{code=\"406\"} %llu\ntickerd_upstream_refused_total{code=\"429\"} %llu\n",
       (unsigned long long)(a.limit_refusals + app->upstream_past.limit_refusals),
       (unsigned long long)(a.throttled + app->upstream_past.throttled));
  one(o, "tickerd_upstream_auth_retries_total", "counter", "auths sent again on the same socket after a 406",
      (double)(a.auth_retries + app->upstream_past.auth_retries));
}

static void lease_metrics(out_t *o, td_app *app) {
  pipeline_stats p;
  pipeline_get_stats(app->pipeline, &p);
  head(o, "tickerd_instance_info", "gauge", "this process's random instance id and its lease role");
  emit(o, "tickerd_instance_info{instance_id=\"%s\",role=\"%s\"} 1\n", app->instance_id, status_role(app));
  one(o, "tickerd_upstream_published_total", "counter", "feed messages published while holding the lease",
      (double)p.upstream);
  one(o, "tickerd_upstream_fenced_total", "counter", "feed messages dropped: the lease was not held", (double)p.fenced);
  if (!app->lease) return;
  lease_stats st;
  lease_get_stats(app->lease, &st);
  one(o, "tickerd_lease_holder", "gauge", "1 while this instance holds the upstream lease", st.holder);
  head(o, "tickerd_lease_holder_info", "gauge", "the lease holder last seen");
  emit(o, "tickerd_lease_holder_info{holder=\"%s\"} 1\n", st.holder_id);
  one(o, "tickerd_lease_acquired_total", "counter", "times this instance became the lease holder", (double)st.acquired);
  one(o, "tickerd_lease_takeovers_total", "counter", "acquisitions after another instance had held the lease",
      (double)st.takeovers);
  one(o, "tickerd_lease_lost_total", "counter", "times this instance stopped holding the lease (release excluded)",
      (double)st.lost);
  one(o, "tickerd_lease_renew_failures_total", "counter", "lease renewals that got no usable answer",
      (double)st.renew_failures);
}

static void deflate_metrics(out_t *o) {
  const wsd_stats *z = &wsd_counters;
  one(o, "tickerd_ws_deflate_frames_compressed_total", "counter",
      "permessage-deflate frames built (once per message, shared by clients)", (double)z->frames_compressed);
  one(o, "tickerd_ws_deflate_sent_total", "counter", "compressed frames queued to clients", (double)z->sent_compressed);
  one(o, "tickerd_ws_deflate_bytes_saved_total", "counter", "plain minus compressed bytes of the frames queued",
      (double)z->bytes_saved);
  one(o, "tickerd_ws_deflate_inflated_total", "counter", "compressed client messages inflated",
      (double)z->messages_inflated);
  head(o, "tickerd_ws_deflate_refused_total", "counter", "compressed client messages refused, by reason");
  emit(o, "tickerd_ws_deflate_refused_total{reason=\"too_big\"} %llu\ntickerd_ws_deflate_refused_total{reason=\"bad_data\"} %llu\n",
       (unsigned long long)z->inflate_too_big, (unsigned long long)z->inflate_bad_data);
  head(o, "tickerd_ws_deflate_offers_total", "counter", "permessage-deflate offers in handshakes, by outcome");
  emit(o, "tickerd_ws_deflate_offers_total{outcome=\"accepted\"} %llu\ntickerd_ws_deflate_offers_total{outcome=\"declined\"} %llu\n"
          "tickerd_ws_deflate_offers_total{outcome=\"malformed\"} %llu\n",
       (unsigned long long)z->offers_accepted, (unsigned long long)z->offers_declined,
       (unsigned long long)z->offers_malformed);
}

static void stream_metrics(out_t *o, td_app *app) {
  hub_stats h;
  hub_get_stats(app->hub, &h);
  head(o, "tickerd_stream_clients", "gauge", "connected streaming clients, by transport");
  emit(o, "tickerd_stream_clients{transport=\"ws\"} %llu\ntickerd_stream_clients{transport=\"sse\"} %llu\n",
       (unsigned long long)h.ws_clients, (unsigned long long)h.sse_clients);
  one(o, "tickerd_stream_subscriptions", "gauge", "client subscriptions to symbols", (double)h.client_subscriptions);
  one(o, "tickerd_stream_channels", "gauge", "Redis channels subscribed for local clients", (double)h.channels);
  one(o, "tickerd_stream_patterns", "gauge", "Redis patterns (PSUBSCRIBE) held for local clients", (double)h.patterns);
  one(o, "tickerd_stream_pattern_deliveries_total", "counter", "messages queued to clients through a pattern",
      (double)h.pattern_deliveries);
  one(o, "tickerd_stream_deliveries_total", "counter", "messages queued to clients", (double)h.deliveries);
  one(o, "tickerd_stream_sends_total", "counter", "system calls that wrote to stream clients (sendmsg, uv_write)",
      (double)http_stats.stream_sends);
  one(o, "tickerd_stream_conflated_total", "counter", "messages dropped for slow clients (newer quote kept)",
      (double)h.conflated);
  one(o, "tickerd_stream_overloads_total", "counter", "times the subscriber fell behind Redis (every flush conflated)",
      (double)h.overloads);
  one(o, "tickerd_stream_overload_conflated_total", "counter", "messages dropped for a newer quote while overloaded",
      (double)http_stats.stream_overload_conflated);
  one(o, "tickerd_stream_slow_closes_total", "counter", "clients closed for exceeding output limits", (double)h.slow_closes);
  one(o, "tickerd_stream_gaps_total", "counter", "sequence gaps seen on channels", (double)h.gaps);
  one(o, "tickerd_stream_refused_total", "counter", "Redis messages refused: malformed, or another symbol's",
      (double)(h.bad_messages + h.misfiled));
  one(o, "tickerd_stream_unpositioned_total", "counter",
      "Redis messages without a position (another producer's), streamed without an id", (double)h.unpositioned);
  one(o, "tickerd_stream_replayed_total", "counter", "messages replayed to recovering clients", (double)h.replayed);
  one(o, "tickerd_stream_refused_unknown_symbols_total", "counter",
      "subscribes refused: clients already added their share of new symbols", (double)h.refused_unknown);
  one(o, "tickerd_ws_protocol_errors_total", "counter", "WebSocket connections closed for protocol errors",
      (double)ws_counters.protocol_errors);
  head(o, "tickerd_stream_rate_skipped_total", "counter", "updates throttled clients never got (a newer one replaced them), by transport");
  emit(o, "tickerd_stream_rate_skipped_total{transport=\"ws\"} %llu\ntickerd_stream_rate_skipped_total{transport=\"sse\"} %llu\n",
       (unsigned long long)h.rate_skipped[HUB_WS], (unsigned long long)h.rate_skipped[HUB_SSE]);
  one(o, "tickerd_stream_rate_frames_encoded_total", "counter", "frames encoded on interval ticks (per transport, symbol and tick)",
      (double)h.rate_frames_encoded);
  one(o, "tickerd_stream_rate_clients", "gauge", "clients with an interval_ms", (double)h.rate_clients);
  one(o, "tickerd_stream_rate_groups", "gauge", "distinct intervals in use", (double)h.rate_groups);
  deflate_metrics(o);
  head(o, "tickerd_auth_denied_total", "counter", "subscribers refused, by reason");
  emit(o, "tickerd_auth_denied_total{reason=\"missing\"} %llu\ntickerd_auth_denied_total{reason=\"invalid\"} %llu\n"
          "tickerd_auth_denied_total{reason=\"expired\"} %llu\ntickerd_auth_denied_total{reason=\"origin\"} %llu\n"
          "tickerd_auth_denied_total{reason=\"symbol\"} %llu\n",
       (unsigned long long)auth_counters.missing, (unsigned long long)auth_counters.invalid,
       (unsigned long long)auth_counters.expired, (unsigned long long)auth_counters.forbidden_origin,
       (unsigned long long)auth_counters.forbidden_symbol);
}

void api_metrics(td_request *req) {
  td_app *app = req_app(req);
  out_t o = {malloc(METRICS_BUF_INITIAL), 0, METRICS_BUF_INITIAL};
  if (!o.p) {
    http_error(req, 500, "internal", "out of memory", NULL);
    return;
  }
  o.p[0] = '\0';
  http_metrics(&o);
  task_metrics(&o, app);
  quote_metrics(&o, app);
  upstream_metrics(&o, app);
  lease_metrics(&o, app);
  stream_metrics(&o, app);
  one(&o, "tickerd_resident_memory_bytes", "gauge", "resident set size", (double)status_rss_bytes());
  one(&o, "tickerd_uptime_seconds", "gauge", "seconds since start", (double)(uv_now(app->loop) - app->start_ms) / 1000.0);
  http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", o.p, o.len, NULL);
  free(o.p);
}
