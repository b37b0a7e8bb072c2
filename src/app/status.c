/* /status and readiness. Each section mirrors one module's counters. */
#include "status.h"

#include <stdio.h>
#include <unistd.h>

#include "market/alpaca.h"
#include "market/alpaca_rest.h"
#include "app/api.h"
#include "app/auth.h"
#include "base/buf.h"
#include "market/feed_sim.h"
#include "stream/hub.h"
#include "ingest_pace.h"
#include "base/jsonw.h"
#include "base/log.h"
#include "market/pipeline.h"
#include "market/publisher.h"
#include "market/quote_store.h"
#include "http/server.h"
#include "market/subscriber.h"
#include "redis/lease.h"
#include "redis/sentinel.h"
#include "app/task.h"
#include "task_share.h"
#include "base/version.h"
#include "stream/ws_session.h"
#include "http/ws_deflate.h"

/* Reading /proc costs microseconds: /status and /metrics share a reading
 * taken at most once per STATUS_RSS_MAX_AGE_NS. */
#define STATUS_RSS_MAX_AGE_NS 1000000000ULL

long status_rss_bytes(void) {
  static long cached = -1;
  static uint64_t taken_at;
  uint64_t now = uv_hrtime();
  if (cached >= 0 && now - taken_at < STATUS_RSS_MAX_AGE_NS) return cached;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long pages_total, pages_rss;
  int n = fscanf(f, "%ld %ld", &pages_total, &pages_rss);
  fclose(f);
  cached = n == 2 ? pages_rss * sysconf(_SC_PAGESIZE) : -1;
  taken_at = now;
  return cached;
}

static void http_section(jsonw *w) {
  const td_http_stats *s = &http_stats;
  JW_OBJECT(w, "http");
  JW_U64(w, "open_connections", s->open);
  JW_U64(w, "accepted", s->accepted);
  JW_U64(w, "rejected_full", s->rejected_full);
  JW_U64(w, "requests", s->requests);
  JW_OBJECT(w, "responses");
  JW_U64(w, "1xx", s->responses[1]);
  JW_U64(w, "2xx", s->responses[2]);
  JW_U64(w, "3xx", s->responses[3]);
  JW_U64(w, "4xx", s->responses[4]);
  JW_U64(w, "5xx", s->responses[5]);
  jw_end(w);
  JW_U64(w, "bad_requests", s->bad_requests);
  JW_U64(w, "too_large", s->too_large);
  JW_U64(w, "header_timeouts", s->header_timeouts);
  JW_U64(w, "idle_timeouts", s->idle_timeouts);
  JW_U64(w, "write_timeouts", s->write_timeouts);
  JW_U64(w, "backpressure_pauses", s->backpressure_pauses);
  JW_U64(w, "upgraded", s->taken_over);
  jw_end(w);
}

static void tasks_section(jsonw *w, td_app *app) {
  task_stats t;
  tasks_stats(app->tasks, &t);
  JW_OBJECT(w, "tasks");
  JW_U64(w, "active", t.active);
  JW_U64(w, "pending", t.pending);
  JW_U64(w, "running", t.running);
  JW_U64(w, "completed", t.completed);
  JW_U64(w, "failed", t.failed);
  JW_U64(w, "cancelled", t.cancelled);
  JW_U64(w, "rejected", t.rejected);
  JW_U64(w, "created", t.created);
  JW_U64(w, "retained", t.retained);
  JW_U64(w, "expired", t.expired);
  JW_U64(w, "evicted", t.evicted);
  if (app->share) tshare_status(app->share, w);
  jw_end(w);
}

/* redis+sentinel://: where the primary is and how it was found. */
static void sentinel_section(jsonw *w, td_app *app) {
  td_sentinel *t = sentinel_find(app->loop, app->cfg->redis_url);
  if (!t) return;
  sentinel_stats st;
  sentinel_get_stats(t, &st);
  JW_OBJECT(w, "sentinel");
  JW_STR(w, "master", st.master);
  JW_STR(w, "primary", st.primary);
  JW_U64(w, "switches", st.switches);
  JW_U64(w, "switch_events", st.switch_events);
  JW_U64(w, "queries", st.queries);
  JW_U64(w, "query_failures", st.query_failures);
  JW_U64(w, "stale_answers", st.stale_answers);
  JW_U64(w, "stale_configs", st.stale_configs);
  JW_U64(w, "config_epoch", st.config_epoch);
  JW_U64(w, "sentinels", (uint64_t)st.nhosts);
  JW_U64(w, "sentinels_ready", (uint64_t)st.ready);
  JW_U64(w, "sentinels_subscribed", (uint64_t)st.subscribed);
  jw_end(w);
}

static void redis_section(jsonw *w, td_app *app) {
  struct pub_stats p;
  pipeline_publisher_stats(app->pipeline, &p);
  struct sub_stats s;
  sub_stats(app->sub, &s);
  JW_OBJECT(w, "redis");
  JW_OBJECT(w, "publisher");
  JW_STR(w, "state", rconn_state_name(p.state));
  JW_U64(w, "connections", TD_REDIS_PUBLISH_CONNS);
  JW_U64(w, "published", p.published);
  JW_U64(w, "inflight", p.inflight);
  JW_U64(w, "outbox", p.outbox);
  JW_U64(w, "conflated", p.conflated);
  JW_U64(w, "dropped", p.dropped);
  JW_U64(w, "errors", p.errors);
  JW_U64(w, "reconnects", p.reconnects);
  JW_U64(w, "last_written", p.last_written);
  JW_U64(w, "last_errors", p.last_errors);
  JW_U64(w, "script_retries", p.script_retries);
  jw_end(w);
  JW_OBJECT(w, "subscriber");
  JW_STR(w, "state", rconn_state_name(s.state));
  JW_U64(w, "channels", s.channels);
  JW_U64(w, "messages", s.messages);
  JW_U64(w, "reconnects", s.reconnects);
  JW_U64(w, "heartbeat_timeouts", s.hb_timeouts);
  JW_U64(w, "patterns", s.patterns);
  JW_U64(w, "pattern_messages", s.pmessages);
  JW_U64(w, "pattern_duplicates", s.pdups);
  jw_end(w);
  sentinel_section(w, app);
  jw_end(w);
}

/* A counter per kind (or per reason), leaving out the zeros. */
static void nonzero_counts(jsonw *w, const char *key, const uint64_t *counts, int n, const char *(*name)(int)) {
  jw_object(w, key);
  for (int i = 0; i < n; i++)
    if (counts[i]) jw_u64(w, name(i), counts[i]);
  jw_end(w);
}

static const char *kind_name(int k) { return smsg_kind_channel((smsg_kind)k); }
static const char *skip_name(int r) { return smsg_skip_name((smsg_skip_reason)r); }

static void quotes_section(jsonw *w, td_app *app) {
  pipeline_stats p;
  pipeline_get_stats(app->pipeline, &p);
  qstore_stats q;
  qstore_get_stats(app->store, &q);
  JW_OBJECT(w, "quotes");
  JW_STR(w, "epoch", qstore_epoch_hex(app->store));
  JW_STR(w, "positions", pipeline_script_sha(app->pipeline) ? "redis" : "memory");
  if (pipeline_script_sha(app->pipeline)) JW_STR(w, "script_sha", pipeline_script_sha(app->pipeline));
  nonzero_counts(w, "received", p.received, SMSG_KIND_COUNT, kind_name);
  JW_U64(w, "queued", p.queued);
  JW_U64(w, "refused_symbols", p.refused);
  JW_U64(w, "upstream", p.upstream);
  JW_U64(w, "fenced", p.fenced);
  JW_U64(w, "batches", p.batches);
  JW_U64(w, "batches_rejected", p.batches_rejected);
  nonzero_counts(w, "skipped", p.stream.skipped, SMSG_SKIP_COUNT, skip_name);
  JW_U64(w, "bad_json", p.stream.bad_json);
  smsg_tier_stats tiers;
  smsg_get_tier_stats(&tiers);
  JW_OBJECT(w, "parse_tiers"); /* items read by each parser tier (docs/stream_msg_fast.md) */
  JW_U64(w, "compact", tiers.compact_items);
  JW_U64(w, "scanned", tiers.scanned_items);
  JW_U64(w, "jansson", tiers.jansson_items);
  JW_U64(w, "fast_abandoned", tiers.fast_abandoned);
  jw_end(w);
  JW_U64(w, "symbols", q.symbols);
  JW_U64(w, "history_entries", q.entries);
  ingest_pace_stats ps;
  pace_get_stats(app->pace, &ps);
  JW_OBJECT(w, "paced_posts"); /* POST /quotes answers that waited for Redis */
  JW_U64(w, "total", ps.paced);
  JW_U64(w, "waiting", ps.waiting);
  JW_U64(w, "expired", ps.expired);
  jw_end(w);
  if (app->sim) {
    sim_stats ss;
    sim_get_stats(app->sim, &ss);
    JW_OBJECT(w, "sim");
    jw_double(w, "rate", sim_rate(app->sim));
    JW_U64(w, "produced", ss.quotes);
    JW_U64(w, "shed", ss.shed);
    jw_end(w);
  }
  jw_end(w);
}

static void upstream_section(jsonw *w, td_app *app) {
  if (!app->alpaca) {
    jw_null(w, "upstream");
    return;
  }
  JW_OBJECT(w, "upstream");
  for (int id = 0; id < ALPACA_STREAM_COUNT; id++) {
    alpaca_stats a;
    alpaca_get_stats(app->alpaca, (alpaca_stream_id)id, &a);
    if (!a.enabled) continue;
    jw_object(w, id == ALPACA_STREAM_DATA ? "data" : "news");
    JW_STR(w, "state", alpaca_state_name(a.state));
    nonzero_counts(w, "messages", a.messages, SMSG_KIND_COUNT, kind_name);
    JW_U64(w, "messages_total", a.messages_total);
    jw_double(w, "msgs_per_sec", a.msgs_per_sec);
    JW_I64(w, "last_message_ms", a.last_message_ms);
    JW_U64(w, "reconnects", a.reconnects);
    bool data = id == ALPACA_STREAM_DATA; /* role changes stop only the client, both streams */
    JW_U64(w, "limit_refusals", a.limit_refusals + (data ? app->upstream_past.limit_refusals : 0));
    JW_U64(w, "auth_retries", a.auth_retries + (data ? app->upstream_past.auth_retries : 0));
    JW_U64(w, "throttled", a.throttled + (data ? app->upstream_past.throttled : 0));
    JW_U64(w, "backoff_ms", a.backoff_ms);
    JW_U64(w, "slow_client_warnings", a.slow_client);
    JW_U64(w, "protocol_errors", a.protocol_errors);
    JW_U64(w, "bad_frames", a.bad_frames);
    jw_end(w);
  }
  jw_end(w);
}

const char *status_role(const td_app *app) {
  if (!app->lease) return "none";
  return lease_held(app->lease) ? "holder" : "standby";
}

/* The upstream lease: who holds it, and how this instance got or lost it. */
static void lease_section(jsonw *w, td_app *app) {
  if (!app->lease) {
    jw_null(w, "lease");
    return;
  }
  lease_stats st;
  lease_get_stats(app->lease, &st);
  lease_options lo;
  char key[LEASE_KEY_MAX + 1];
  cfg_lease_opts(app->cfg, &lo, key, sizeof(key));
  JW_OBJECT(w, "lease");
  JW_STR(w, "key", key);
  JW_STR(w, "role", status_role(app));
  JW_STR(w, "state", lease_state_name(st.state));
  JW_STR(w, "holder", st.holder_id);
  JW_I64(w, "holder_ttl_ms", st.holder_pttl_ms);
  JW_U64(w, "ttl_ms", lo.ttl_ms);
  JW_U64(w, "renew_ms", lo.renew_ms);
  JW_U64(w, "rounds", st.rounds);
  JW_U64(w, "acquired", st.acquired);
  JW_U64(w, "takeovers", st.takeovers);
  JW_U64(w, "lost", st.lost);
  JW_U64(w, "renew_failures", st.renew_failures);
  JW_U64(w, "expired_unrenewed", st.expired_unrenewed);
  jw_end(w);
}

/* permessage-deflate (README "Compression"), inside "streaming". */
static void deflate_section(jsonw *w) {
  const wsd_stats *z = &wsd_counters;
  JW_OBJECT(w, "ws_deflate");
  JW_U64(w, "offers_accepted", z->offers_accepted);
  JW_U64(w, "offers_declined", z->offers_declined);
  JW_U64(w, "offers_malformed", z->offers_malformed);
  JW_U64(w, "frames_compressed", z->frames_compressed);
  JW_U64(w, "frames_not_smaller", z->frames_not_smaller);
  JW_U64(w, "sent_compressed", z->sent_compressed);
  JW_U64(w, "bytes_saved", z->bytes_saved);
  JW_U64(w, "messages_inflated", z->messages_inflated);
  JW_U64(w, "inflate_too_big", z->inflate_too_big);
  JW_U64(w, "inflate_bad_data", z->inflate_bad_data);
  jw_end(w);
}

static void streaming_section(jsonw *w, td_app *app) {
  hub_stats h;
  hub_get_stats(app->hub, &h);
  JW_OBJECT(w, "streaming");
  JW_U64(w, "clients", h.clients);
  JW_U64(w, "ws_clients", h.ws_clients);
  JW_U64(w, "sse_clients", h.sse_clients);
  JW_U64(w, "channels", h.channels);
  JW_U64(w, "subscriptions", h.client_subscriptions);
  JW_U64(w, "messages", h.messages);
  JW_U64(w, "deliveries", h.deliveries);
  /* Writes to stream sockets, and how many per delivered quote: below 1
   * when a client's messages of one loop turn share one write. Snapshots,
   * replays and heartbeats are written too but are not deliveries. */
  JW_U64(w, "sends", http_stats.stream_sends);
  jw_double(w, "sends_per_delivery", h.deliveries ? (double)http_stats.stream_sends / (double)h.deliveries : 0);
  JW_U64(w, "conflated", h.conflated);
  JW_U64(w, "slow_closes", h.slow_closes);
  /* the subscriber behind Redis: every flush conflates (HUB_BEHIND_MS) */
  jw_object(w, "overload");
  jw_bool(w, "now", h.overloaded);
  JW_U64(w, "episodes", h.overloads);
  JW_U64(w, "flushes", http_stats.stream_overload_flushes);
  JW_U64(w, "conflated", http_stats.stream_overload_conflated);
  jw_end(w);
  JW_U64(w, "rejected_clients", h.rejected_clients);
  JW_U64(w, "gaps", h.gaps);
  JW_U64(w, "bad_messages", h.bad_messages);
  JW_U64(w, "misfiled", h.misfiled);
  JW_U64(w, "unpositioned", h.unpositioned);
  JW_U64(w, "replayed", h.replayed);
  JW_U64(w, "refused_unknown_symbols", h.refused_unknown);
  JW_U64(w, "resumed_from_redis", h.resumed_from_redis);
  JW_U64(w, "patterns", h.patterns);
  JW_U64(w, "pattern_subscriptions", h.pattern_subscriptions);
  JW_U64(w, "pattern_deliveries", h.pattern_deliveries);
  JW_U64(w, "auth_denied_patterns", auth_counters.forbidden_pattern);
  JW_U64(w, "ws_protocol_errors", ws_counters.protocol_errors);
  JW_U64(w, "ws_bad_messages", ws_counters.bad_messages);
  JW_U64(w, "auth_denied", auth_counters.missing + auth_counters.invalid + auth_counters.expired +
                                auth_counters.forbidden_origin + auth_counters.forbidden_symbol);
  JW_OBJECT(w, "rate"); /* per-client interval_ms (stream/hub.h) */
  JW_U64(w, "clients", h.rate_clients);
  JW_U64(w, "skipped_ws", h.rate_skipped[HUB_WS]);
  JW_U64(w, "skipped_sse", h.rate_skipped[HUB_SSE]);
  JW_U64(w, "frames_encoded", h.rate_frames_encoded);
  hub_write_rate_groups(app->hub, w, "groups");
  jw_end(w);
  deflate_section(w);
  jw_end(w);
}

void status_write(td_app *app, jsonw *w) {
  uint64_t uptime_ms = uv_now(app->loop) - app->start_ms;
  jw_object(w, NULL);
  JW_STR(w, "service", "tickerd");
  JW_STR(w, "version", TD_VERSION);
  JW_U64(w, "uptime_s", uptime_ms / 1000);
  JW_I64(w, "rss_bytes", status_rss_bytes());
  JW_U64(w, "open_connections", http_stats.open);
  JW_OBJECT(w, "buffers"); /* shared message buffers (buf.h) */
  JW_U64(w, "live", buf_live_count());
  JW_U64(w, "live_bytes", buf_live_bytes());
  JW_U64(w, "pooled", buf_pooled_count());
  jw_end(w);
  JW_STR(w, "feed", cfg_feed_name(app->cfg->feed));
  JW_STR(w, "instance_id", app->instance_id);
  JW_STR(w, "role", status_role(app));
  lease_section(w, app);
  http_section(w);
  tasks_section(w, app);
  redis_section(w, app);
  quotes_section(w, app);
  streaming_section(w, app);
  api_candles_status(w, app);
  upstream_section(w, app);
  JW_OBJECT(w, "log");
  JW_U64(w, "warnings", log_lines(TD_LOG_WARN));
  JW_U64(w, "errors", log_lines(TD_LOG_ERROR));
  jw_end(w);
  jw_end(w);
}

bool status_ready(td_app *app, const char **why) {
  if (app->shutting_down) {
    *why = "shutting down";
    return false;
  }
  struct pub_stats ps;
  if (!pipeline_publisher_stats(app->pipeline, &ps)) {
    *why = "redis publisher not connected";
    return false;
  }
  struct sub_stats ss;
  sub_stats(app->sub, &ss);
  if (ss.state != RCONN_READY) {
    *why = "redis subscriber not connected";
    return false;
  }
  /* a standby's feed is meant to be idle: it still serves */
  if (app->alpaca && (!app->lease || lease_held(app->lease))) {
    alpaca_stats a;
    alpaca_get_stats(app->alpaca, ALPACA_STREAM_DATA, &a);
    if (a.state != ALPACA_STREAMING) {
      *why = "upstream feed not streaming";
      return false;
    }
  }
  return true;
}
