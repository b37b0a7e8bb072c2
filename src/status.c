/* /status and readiness. Each section mirrors one module's counters. */
#include "status.h"

#include <stdio.h>
#include <unistd.h>

#include "alpaca.h"
#include "alpaca_rest.h"
#include "auth.h"
#include "buf.h"
#include "feed_sim.h"
#include "hub.h"
#include "log.h"
#include "pipeline.h"
#include "publisher.h"
#include "quote_store.h"
#include "server.h"
#include "subscriber.h"
#include "task.h"
#include "version.h"
#include "ws_session.h"

long status_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long pages_total, pages_rss;
  int n = fscanf(f, "%ld %ld", &pages_total, &pages_rss);
  fclose(f);
  return n == 2 ? pages_rss * sysconf(_SC_PAGESIZE) : -1;
}

static json_t *http_section(void) {
  const td_http_stats *s = &http_stats;
  return json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                   "open_connections", (json_int_t)s->open, "accepted", (json_int_t)s->accepted,
                   "rejected_full", (json_int_t)s->rejected_full, "requests", (json_int_t)s->requests, "responses",
                   "1xx", (json_int_t)s->responses[1], "2xx", (json_int_t)s->responses[2], "3xx",
                   (json_int_t)s->responses[3], "4xx", (json_int_t)s->responses[4], "5xx", (json_int_t)s->responses[5],
                   "bad_requests", (json_int_t)s->bad_requests, "too_large", (json_int_t)s->too_large,
                   "header_timeouts", (json_int_t)s->header_timeouts, "idle_timeouts", (json_int_t)s->idle_timeouts,
                   "write_timeouts", (json_int_t)s->write_timeouts, "backpressure_pauses",
                   (json_int_t)s->backpressure_pauses, "upgraded", (json_int_t)s->taken_over);
}

static json_t *tasks_section(td_app *app) {
  task_stats t;
  tasks_stats(app->tasks, &t);
  return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "active", (json_int_t)t.active,
                   "pending", (json_int_t)t.pending, "running", (json_int_t)t.running, "completed",
                   (json_int_t)t.completed, "failed", (json_int_t)t.failed, "cancelled", (json_int_t)t.cancelled,
                   "rejected", (json_int_t)t.rejected, "created", (json_int_t)t.created, "retained",
                   (json_int_t)t.retained, "expired", (json_int_t)t.expired, "evicted", (json_int_t)t.evicted);
}

static json_t *redis_section(td_app *app) {
  struct pub_stats p;
  pub_stats(app->pub, &p);
  struct sub_stats s;
  sub_stats(app->sub, &s);
  return json_pack("{s:{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:s, s:I, s:I, s:I}}",
                   "publisher", "state", pub_state_name(app->pub), "published", (json_int_t)p.published, "inflight",
                   (json_int_t)p.inflight, "outbox", (json_int_t)p.outbox, "conflated", (json_int_t)p.conflated,
                   "dropped", (json_int_t)p.dropped, "errors", (json_int_t)p.errors, "reconnects",
                   (json_int_t)p.reconnects, "last_written", (json_int_t)p.last_written, "subscriber", "state",
                   rconn_state_name(s.state), "channels", (json_int_t)s.channels, "messages", (json_int_t)s.messages,
                   "reconnects", (json_int_t)s.reconnects);
}

static json_t *quotes_section(td_app *app) {
  pipeline_stats p;
  pipeline_get_stats(app->pipeline, &p);
  qstore_stats q;
  qstore_get_stats(app->store, &q);
  json_t *kinds = json_object();
  for (int k = 0; k < SMSG_KIND_COUNT; k++)
    if (p.received[k]) json_object_set_new(kinds, smsg_kind_channel((smsg_kind)k), json_integer((json_int_t)p.received[k]));
  json_t *skipped = json_object();
  for (int r = 0; r < SMSG_SKIP_COUNT; r++)
    if (p.stream.skipped[r]) json_object_set_new(skipped, smsg_skip_name((smsg_skip_reason)r), json_integer((json_int_t)p.stream.skipped[r]));
  json_t *o = json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:I}", "epoch", qstore_epoch_hex(app->store),
                        "received", kinds, "queued", (json_int_t)p.queued, "refused_symbols", (json_int_t)p.refused,
                        "batches", (json_int_t)p.batches, "batches_rejected", (json_int_t)p.batches_rejected,
                        "skipped", skipped, "bad_json", (json_int_t)p.stream.bad_json, "symbols",
                        (json_int_t)q.symbols, "history_entries", (json_int_t)q.entries);
  if (app->sim) {
    sim_stats ss;
    sim_get_stats(app->sim, &ss);
    json_object_set_new(o, "sim", json_pack("{s:f, s:I, s:I}", "rate", sim_rate(app->sim), "produced",
                                            (json_int_t)ss.quotes, "shed", (json_int_t)ss.shed));
  }
  return o;
}

static json_t *upstream_section(td_app *app) {
  if (!app->alpaca) return json_null();
  json_t *o = json_object();
  for (int id = 0; id < ALPACA_STREAM_COUNT; id++) {
    alpaca_stats a;
    alpaca_get_stats(app->alpaca, (alpaca_stream_id)id, &a);
    if (!a.enabled) continue;
    json_t *kinds = json_object();
    for (int k = 0; k < SMSG_KIND_COUNT; k++)
      if (a.messages[k]) json_object_set_new(kinds, smsg_kind_channel((smsg_kind)k), json_integer((json_int_t)a.messages[k]));
    json_object_set_new(o, id == ALPACA_STREAM_DATA ? "data" : "news",
                        json_pack("{s:s, s:o, s:I, s:f, s:I, s:I, s:I, s:I, s:I}", "state", alpaca_state_name(a.state),
                                  "messages", kinds, "messages_total", (json_int_t)a.messages_total, "msgs_per_sec",
                                  a.msgs_per_sec, "last_message_ms", (json_int_t)a.last_message_ms, "reconnects",
                                  (json_int_t)a.reconnects, "slow_client_warnings", (json_int_t)a.slow_client,
                                  "protocol_errors", (json_int_t)a.protocol_errors, "bad_frames",
                                  (json_int_t)a.bad_frames));
  }
  return o;
}

static json_t *streaming_section(td_app *app) {
  hub_stats h;
  hub_get_stats(app->hub, &h);
  return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "clients",
                   (json_int_t)h.clients, "ws_clients", (json_int_t)h.ws_clients, "sse_clients", (json_int_t)h.sse_clients,
                   "channels", (json_int_t)h.channels, "subscriptions", (json_int_t)h.client_subscriptions, "messages",
                   (json_int_t)h.messages, "deliveries", (json_int_t)h.deliveries, "conflated", (json_int_t)h.conflated,
                   "slow_closes", (json_int_t)h.slow_closes, "rejected_clients", (json_int_t)h.rejected_clients,
                   "gaps", (json_int_t)h.gaps, "replayed", (json_int_t)h.replayed, "ws_protocol_errors",
                   (json_int_t)ws_counters.protocol_errors, "ws_bad_messages", (json_int_t)ws_counters.bad_messages,
                   "auth_denied",
                   (json_int_t)(auth_counters.missing + auth_counters.invalid + auth_counters.expired +
                                auth_counters.forbidden_origin));
}

json_t *status_json(td_app *app) {
  uint64_t uptime_ms = uv_now(app->loop) - app->start_ms;
  json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I}", "service", "tickerd", "version", TD_VERSION, "uptime_s",
                        (json_int_t)(uptime_ms / 1000), "rss_bytes", (json_int_t)status_rss_bytes(), "open_connections",
                        (json_int_t)http_stats.open);
  json_object_set_new(o, "http", http_section());
  json_object_set_new(o, "tasks", tasks_section(app));
  json_object_set_new(o, "feed", json_string(cfg_feed_name(app->cfg->feed)));
  json_object_set_new(o, "redis", redis_section(app));
  json_object_set_new(o, "quotes", quotes_section(app));
  json_object_set_new(o, "streaming", streaming_section(app));
  json_object_set_new(o, "upstream", upstream_section(app));
  json_object_set_new(o, "log", json_pack("{s:I, s:I}", "warnings", (json_int_t)log_lines(TD_LOG_WARN), "errors",
                                          (json_int_t)log_lines(TD_LOG_ERROR)));
  return o;
}

bool status_ready(td_app *app, const char **why) {
  if (app->shutting_down) {
    *why = "shutting down";
    return false;
  }
  if (!pub_ready(app->pub)) {
    *why = "redis publisher not connected";
    return false;
  }
  struct sub_stats ss;
  sub_stats(app->sub, &ss);
  if (ss.state != RCONN_READY) {
    *why = "redis subscriber not connected";
    return false;
  }
  if (app->alpaca) {
    alpaca_stats a;
    alpaca_get_stats(app->alpaca, ALPACA_STREAM_DATA, &a);
    if (a.state != ALPACA_STREAMING) {
      *why = "upstream feed not streaming";
      return false;
    }
  }
  return true;
}
