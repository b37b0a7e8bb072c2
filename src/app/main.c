/* tickerd entry point: load the configuration, bring the modules up on one
 * libuv loop, run it, and shut down gracefully on SIGINT/SIGTERM. */
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "market/alpaca.h"
#include "market/alpaca_rest.h"
#include "app/api.h"
#include "app/app.h"
#include "app/auth.h"
#include "routes.h"
#include "base/buf.h"
#include "app/config.h"
#include "market/candle_pub.h"
#include "market/feed_sim.h"
#include "stream/candle_fan.h"
#include "stream/hub.h"
#include "ingest_pace.h"
#include "base/log.h"
#include "market/pipeline.h"
#include "market/publisher.h"
#include "market/quote_store.h"
#include "http/server.h"
#include "market/subscriber.h"
#include "market/history_redis.h"
#include "redis/lease.h"
#include "redis/redis_tls.h"
#include "redis/sentinel.h"
#include "app/task.h"
#include "task_share.h"
#include "base/td_limits.h"
#include "base/version.h"
#include "http/ws_deflate.h"
#include "web.h"

/* How often history older than --history-ms is freed. */
#define MAIN_EXPIRE_INTERVAL_MS 1000
/* Connections that must have closed since the peak (and at least half of
 * it) before freed memory is handed back to the kernel with malloc_trim:
 * glibc keeps the freed heap of thousands of departed clients mapped. */
#define MAIN_TRIM_AFTER_CLOSED 1000

typedef struct {
  td_app app;
  uv_signal_t sigint, sigterm, sighup;
  uv_timer_t expire_timer;
  int pending_closes;       /* publishers, subscriber, feed: each calls back once */
  int tasks_topic;          /* the hub's "tasks" topic */
  bool alpaca_stopping;     /* a role change's alpaca_stop has not called back yet */
} td_main;

/* build/web next to the binary, so `make run` needs no flag. */
static void default_web_root(char *out, size_t size) {
  char exe[PATH_MAX - 16]; /* room for "/web" in out */
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) {
    snprintf(out, size, "build/web");
    return;
  }
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (slash) *slash = '\0';
  snprintf(out, size, "%s/web", exe);
}

/* Task state changes go to the WebSocket clients of the "tasks" topic, and
 * finished tasks to Redis for the fleet. */
static void on_task_change(void *ud, const td_task *t) {
  td_main *m = ud;
  if (m->app.share) tshare_task_changed(m->app.share, m->app.tasks, t);
  if (!hub_topic_listened(m->app.hub, m->tasks_topic)) return;
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  JW_STR(&w, "type", "task");
  task_write_json(&w, "task", m->app.tasks, t);
  jw_end(&w);
  if (!w.failed) hub_topic_publish(m->app.hub, m->tasks_topic, w.p, w.len);
  jw_free(&w);
}

/* ---- feeds into the one message path ------------------------------------------ */

static void on_sim_json(void *ud, const char *json, size_t len) { pipeline_feed(ud, json, len); }
static void on_upstream_msg(void *ud, const smsg_msg *m) { pipeline_publish(ud, m); }

/* Builds the feed without starting it: a bad configuration still stops
 * the process at startup, while the feed itself runs only on the holder of
 * the upstream lease (feed_run). */
static int start_feed(td_main *m) {
  td_app *app = &m->app;
  td_config *cfg = app->cfg;
  alpaca_opts aopts;
  cfg_alpaca_opts(cfg, &aopts);
  const char *err = NULL;
  if (cfg->feed == TD_FEED_SIM) {
    uint64_t seed = cfg->task_seed_set ? cfg->task_seed : (uint64_t)uv_hrtime();
    app->sim = sim_new(app->loop, cfg->symbols, cfg->sim_rate, seed, on_sim_json, app->pipeline, &err);
    if (!app->sim) {
      fprintf(stderr, "tickerd: --symbols/--sim-rate: %s\n", err ? err : "cannot start the simulated feed");
      return -1;
    }
    sim_set_trades(app->sim, cfg->sim_trades);
  } else if (cfg->feed == TD_FEED_ALPACA) {
    if (alpaca_new(app->loop, &aopts, on_upstream_msg, app->pipeline, &app->alpaca, &err) < 0) {
      fprintf(stderr, "tickerd: %s\n", err ? err : "cannot start the Alpaca feed");
      return -1;
    }
  }
  /* the REST fallback of GET /quotes/{symbol} needs only the credentials */
  if (cfg->alpaca_key_id && cfg->alpaca_secret_key && arest_new(app->loop, &aopts, &app->rest, &err) < 0) {
    fprintf(stderr, "tickerd: --alpaca-rest-url: %s\n", err ? err : "invalid");
    return -1;
  }
  return 0;
}

/* ---- the upstream lease: the feed runs on its holder only ---------------------- */

static void feed_closed(td_main *m);
static void feed_run(td_main *m, bool on);

/* A role change stopped the Alpaca client (alpaca_stop frees it). */
static void on_alpaca_role_stopped(void *data) {
  td_main *m = data;
  m->alpaca_stopping = false;
  if (m->app.shutting_down) feed_closed(m);
  else if (m->app.lease && lease_held(m->app.lease)) feed_run(m, true);
}

static void feed_run(td_main *m, bool on) {
  td_app *app = &m->app;
  if (app->shutting_down) return;
  if (app->cfg->feed == TD_FEED_SIM) {
    if (on) sim_start(app->sim);
    else sim_stop(app->sim);
    return;
  }
  if (app->cfg->feed != TD_FEED_ALPACA) return;
  if (!on) {
    /* a clean close: Alpaca frees the key's one session slot at once, for
     * the instance that takes over */
    if (!app->alpaca) return;
    alpaca_stats st;
    alpaca_get_stats(app->alpaca, ALPACA_STREAM_DATA, &st);
    app->upstream_past.limit_refusals += st.limit_refusals;
    app->upstream_past.auth_retries += st.auth_retries;
    app->upstream_past.throttled += st.throttled;
    m->alpaca_stopping = true;
    alpaca_stop(app->alpaca, on_alpaca_role_stopped, m);
    app->alpaca = NULL;
    return;
  }
  if (m->alpaca_stopping) return; /* on_alpaca_role_stopped starts it again */
  if (!app->alpaca) {
    alpaca_opts aopts;
    cfg_alpaca_opts(app->cfg, &aopts);
    const char *err = NULL;
    if (alpaca_new(app->loop, &aopts, on_upstream_msg, app->pipeline, &app->alpaca, &err) < 0) {
      td_logline *l = log_begin(TD_LOG_ERROR, "alpaca_start_failed");
      if (l) { log_str(l, "error", err ? err : "?"); log_end(l); }
      return;
    }
  }
  alpaca_start(app->alpaca);
}

static void on_lease_role(td_lease *l, bool holder, void *ud) {
  td_main *m = ud;
  feed_run(m, holder);
  if (holder) return;
  size_t dropped = pipeline_drop_upstream(m->app.pipeline);
  if (dropped) {
    td_logline *line = log_begin(TD_LOG_WARN, "upstream_outbox_dropped");
    if (line) { log_int(line, "messages", (int64_t)dropped); log_end(line); }
  }
}

static int start_lease(td_main *m) {
  td_app *app = &m->app;
  if (app->cfg->feed == TD_FEED_NONE) return 0; /* POST /quotes needs no lease */
  lease_options lo;
  char key[LEASE_KEY_MAX + 1];
  const char *err = cfg_lease_opts(app->cfg, &lo, key, sizeof(key));
  if (!err) app->lease = lease_new(app->loop, app->cfg->redis_url, app->instance_id, &lo, on_lease_role, m, &err);
  if (!app->lease) {
    fprintf(stderr, "tickerd: upstream lease: %s\n", err ? err : "cannot create");
    return -1;
  }
  pipeline_set_lease(app->pipeline, app->lease);
  lease_start(app->lease);
  return 0;
}

/* ---- shutdown ------------------------------------------------------------------ */

static void closed_one(void *data) {
  td_main *m = data;
  if (--m->pending_closes > 0) return;
  log_msg(TD_LOG_INFO, "server_stopped", "all connections and upstreams closed");
  uv_close((uv_handle_t *)&m->sigint, NULL);
  uv_close((uv_handle_t *)&m->sigterm, NULL);
  uv_close((uv_handle_t *)&m->sighup, NULL);
  uv_close((uv_handle_t *)&m->expire_timer, NULL);
  tasks_close(m->app.tasks);
  log_close();
}

/* The feed is stopped: now the lease may go (released, so that another
 * instance takes over at once rather than after the TTL). */
static void feed_closed(td_main *m) {
  td_app *app = &m->app;
  if (app->lease) {
    pipeline_set_lease(app->pipeline, NULL);
    lease_close(app->lease, closed_one, m);
    app->lease = NULL;
  }
  closed_one(m);
}

/* The feed calls back with its own user data (the pipeline). */
static td_main *running;
static void on_sim_closed(void *pipeline) { feed_closed(running); }
static void on_alpaca_stopped(void *data) {
  td_main *m = data;
  m->app.alpaca = NULL;
  feed_closed(m);
}

/* Connections are drained: now the feed, then the lease, then Redis. */
static void on_drained(void *data) {
  td_main *m = data;
  td_app *app = &m->app;
  /* feed, subscriber, publishers, and the lease if any */
  m->pending_closes = 2 + TD_REDIS_PUBLISH_CONNS + (app->lease ? 1 : 0) + (app->history ? 1 : 0) +
                     (app->share ? 1 : 0);
  if (app->sim) sim_close(app->sim, on_sim_closed), app->sim = NULL;
  else if (app->alpaca) alpaca_stop(app->alpaca, on_alpaca_stopped, m);
  else if (!m->alpaca_stopping) feed_closed(m);
  /* else on_alpaca_role_stopped calls feed_closed */
  if (app->rest) {
    arest_free(app->rest);
    app->rest = NULL;
  }
  pace_close(app->pace);
  if (app->share) tshare_close(app->share, closed_one, m), app->share = NULL;
  if (app->candles) {
    pipeline_set_candles(app->pipeline, NULL);
    m->pending_closes++;
    candle_pub_close(app->candles, closed_one, m);
    app->candles = NULL;
  }
  /* the subscriber first: its heartbeat publishes through pub[0] */
  sub_close(app->sub, closed_one, m);
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) pub_close(app->pub[i], closed_one, m);
  if (app->history) hr_reader_close(app->history, closed_one, m);
}

static void on_signal(uv_signal_t *h, int signum) {
  td_main *m = h->data;
  td_app *app = &m->app;
  if (app->shutting_down) {
    /* a second signal: stop waiting for the grace period */
    log_msg(TD_LOG_WARN, "shutdown_forced", "second signal");
    log_flush();
    _exit(1);
  }
  app->shutting_down = true;
  td_logline *l = log_begin(TD_LOG_INFO, "server_stopping");
  if (l) {
    log_str(l, "signal", signum == SIGINT ? "SIGINT" : "SIGTERM");
    log_int(l, "grace_ms", app->cfg->shutdown_grace_ms);
    log_end(l);
  }
  if (app->sim) sim_stop(app->sim);
  tasks_cancel_all(app->tasks, "server shutting down");
  pace_release_all(app->pace); /* in-flight answers are not held back for Redis */
  server_shutdown(app->server, app->cfg->shutdown_grace_ms, on_drained, m);
}

/* SIGHUP: logrotate has renamed the log file; write on at its path. Its
 * default action would end the process without server_stopped. */
static void on_sighup(uv_signal_t *h, int signum) {
  int rc = log_reopen();
  td_logline *l = rc == 0 ? log_begin(TD_LOG_INFO, "log_reopened") : log_begin(TD_LOG_ERROR, "log_reopen_failed");
  if (l) {
    if (rc != 0) log_str(l, "error", uv_strerror(rc));
    log_end(l);
  }
}

/* After a large drop in connections: give their freed memory back. Their
 * structures, queues and the buffers they held were freed, but glibc keeps
 * freed heap pages mapped (RSS stayed ~40 MB above its start after 5,000
 * clients left); malloc_trim returns the free pages anywhere in the heap. */
static void maybe_trim(void) {
  uint64_t open = http_stats.open, peak = http_stats.open_peak;
  if (peak - open < MAIN_TRIM_AFTER_CLOSED || open > peak / 2) return;
  http_stats.open_peak = open;
  malloc_trim(0);
  td_logline *l = log_begin(TD_LOG_DEBUG, "memory_trimmed");
  if (l) { log_int(l, "open_connections", (int64_t)open); log_end(l); }
}

static void on_expire(uv_timer_t *t) {
  td_main *m = t->data;
  qstore_expire(m->app.store, uv_now(t->loop));
  maybe_trim();
}

/* ---- start --------------------------------------------------------------------- */

/* Redis messages: bars to the candle subscribers, everything else to the hub. */
static void on_sub_message(void *ud, uint32_t id, const char *channel, size_t channel_len, const char *payload,
                           size_t len) {
  td_app *app = ud;
  if (app->candle_fan && candle_fan_on_message(app->candle_fan, channel, channel_len, payload, len)) return;
  hub_on_message_id(app->hub, id, channel, channel_len, payload, len);
}

static void on_sub_state(void *ud, bool ready, bool resubscribed) {
  td_app *app = ud;
  hub_on_subscriber_state(app->hub, ready, resubscribed);
}

/* The bars: built here when --candles (only while holding the lease, see
 * pipeline.c), streamed from Redis to this instance's clients in any case. */
static int start_candles(td_app *app) {
  td_config *cfg = app->cfg;
  if (cfg->candles) {
    candle_opts co = {.timeframes = cfg->candle_timeframes, .grace_ms = cfg->candle_grace_ms,
                      .history = CANDLE_DEFAULT_HISTORY, .max_symbols = TD_MAX_SYMBOLS,
                      .syms = qstore_symtab(app->store)};
    char err[160];
    app->candles = candle_pub_new(app->loop, cfg->redis_url, &co, err, sizeof(err));
    if (!app->candles) {
      fprintf(stderr, "tickerd: --candle-timeframes: %s\n", err);
      return -1;
    }
    pipeline_set_candles(app->pipeline, app->candles);
  }
  app->candle_fan = candle_fan_new(app->hub, app->sub, app->candles ? candle_pub_engine(app->candles) : NULL);
  if (!app->candle_fan) return -1;
  hub_set_candles(app->hub, app->candle_fan);
  /* history of bars built by another instance (the lease holder) from Redis */
  if (app->candles) candle_fan_set_store(app->candle_fan, candle_pub_store(app->candles), api_candles_local, app);
  return 0;
}

/* rediss:// (or a TLS variant of another scheme): load the trust and the
 * client certificate once, before the first connection, and refuse to start
 * on a file that does not load. */
static int start_redis_tls(const td_config *cfg) {
  if (strncasecmp(cfg->redis_url, "rediss", 6) != 0) return 0;
  redis_tls_opts o;
  cfg_redis_tls_opts(cfg, &o);
  const char *err = NULL;
  if (redis_tls_configure(&o, &err) == 0) return 0;
  fprintf(stderr, "tickerd: rediss:// (--redis-ca-file, --ca-file, --redis-cert, --redis-key): %s\n", err);
  return -1;
}

static int start_redis(td_main *m) {
  td_app *app = &m->app;
  td_config *cfg = app->cfg;
  if (start_redis_tls(cfg) != 0) return -1;
  /* the Sentinels' own credentials, if any, before the first connection */
  sentinel_set_auth(cfg->sentinel_user, cfg->sentinel_password);
  app->store = qstore_new((size_t)cfg->history_size, (uint64_t)cfg->history_ms, TD_MAX_SYMBOLS);
  if (!app->store) return -1;
  /* the pipeline's outbox keys: symbol id and channel slot (pipeline.c) */
  pub_options popts = {.outbox_keys = TD_MAX_SYMBOLS * SMSG_KIND_COUNT};
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) {
    app->pub[i] = pub_new(app->loop, cfg->redis_url, &popts);
    if (!app->pub[i]) {
      fprintf(stderr, "tickerd: invalid --redis-url / REDIS_URL (redis://[user:password@]host:port[/db], unix:///path, "
                      "redis[s]+sentinel://[user:password@]host:port,.../master[/db] or redis+cluster://host:port,... or rediss+cluster://...)\n");
      return -1;
    }
  }
  app->pipeline = pipeline_new(app->loop, app->pub, cfg->channel_prefix, app->store);
  app->pace = pace_new(app, (uint32_t)cfg->ingest_max_backlog);
  td_hub_opts hopts;
  cfg_hub_opts(cfg, app->loop, &auth_stream_access, &hopts);
  app->hub = hub_new(&hopts, app->store);
  sub_callbacks cb = {on_sub_message, on_sub_state};
  /* the subscriber's health check publishes heartbeats on the publisher's connection */
  sub_options opt = {.heartbeat_pub = app->pub[0],
                     .heartbeat_ms = TD_SUB_HEARTBEAT_MS,
                     .heartbeat_timeout_ms = TD_SUB_HEARTBEAT_TIMEOUT_MS,
                     .syms = qstore_symtab(app->store),
                     .quote_prefix = cfg->channel_prefix};
  app->sub = sub_new(app->loop, cfg->redis_url, &cb, app, &opt);
  if (!app->pipeline || !app->pace || !app->hub || !app->sub) return -1;
  hub_set_subscriber(app->hub, app->sub);
  if (!cfg->memory_positions) {
    app->history = hr_reader_new(app->loop, cfg->redis_url);
    if (!app->history || pipeline_use_redis_positions(app->pipeline, (unsigned)cfg->history_size) != 0) return -1;
    hub_set_history(app->hub, app->history);
  }
  return start_candles(app);
}

static int start(td_main *m) {
  td_app *app = &m->app;
  td_config *cfg = app->cfg;
  if (start_redis(m) != 0) return -1;
  app->tasks = tasks_new(app->loop, cfg);
  if (!app->tasks) return -1;
  m->tasks_topic = hub_topic_add(app->hub, "tasks");
  tasks_set_observer(app->tasks, on_task_change, m);
  if (cfg->share_tasks && !(app->share = tshare_new(app->loop, cfg))) return -1;
  int n_routes;
  const td_route *routes = app_routes(&n_routes);
  td_server_opts sopts;
  cfg_server_opts(cfg, routes, n_routes, app, &sopts);
  int rc = server_start(&app->server, app->loop, &sopts);
  if (rc != 0) {
    fprintf(stderr, "tickerd: cannot listen on %s:%d: %s\n", cfg->host, cfg->port, uv_strerror(rc));
    td_logline *l = log_begin(TD_LOG_ERROR, "listen_failed");
    if (l) { log_str(l, "host", cfg->host); log_int(l, "port", cfg->port); log_str(l, "error", uv_strerror(rc)); log_end(l); }
    return -1;
  }
  if (start_feed(m) != 0 || start_lease(m) != 0) return -1;
  uv_signal_init(app->loop, &m->sigint);
  uv_signal_init(app->loop, &m->sigterm);
  m->sigint.data = m->sigterm.data = m;
  uv_signal_start(&m->sigint, on_signal, SIGINT);
  uv_signal_start(&m->sigterm, on_signal, SIGTERM);
  uv_signal_init(app->loop, &m->sighup);
  uv_signal_start(&m->sighup, on_sighup, SIGHUP);
  uv_timer_init(app->loop, &m->expire_timer);
  m->expire_timer.data = m;
  uv_timer_start(&m->expire_timer, on_expire, MAIN_EXPIRE_INTERVAL_MS, MAIN_EXPIRE_INTERVAL_MS);
  td_logline *l = log_begin(TD_LOG_INFO, "server_started");
  if (l) {
    log_str(l, "version", TD_VERSION);
    log_str(l, "host", cfg->host);
    log_int(l, "port", server_port(app->server));
    log_str(l, "feed", cfg_feed_name(cfg->feed));
    log_str(l, "epoch", qstore_epoch_hex(app->store));
    log_str(l, "instance", app->instance_id);
    log_int(l, "pid", getpid());
    log_end(l);
  }
  char web_root[PATH_MAX];
  if (cfg->web_root) snprintf(web_root, sizeof(web_root), "%s", cfg->web_root);
  else default_web_root(web_root, sizeof(web_root));
  if (web_load(web_root) <= 0) {
    l = log_begin(TD_LOG_WARN, "dashboard_unavailable");
    if (l) { log_str(l, "web_root", web_root); log_str(l, "message", "no dashboard assets; /dashboard answers 404"); log_end(l); }
  }
  log_flush();
  return 0;
}

int main(int argc, char **argv) {
  /* hiredis and our sockets write with write(2): a vanished peer must be an
   * EPIPE, not a signal that kills the process */
  signal(SIGPIPE, SIG_IGN);
  static td_config cfg;
  int rc = cfg_load(&cfg, argc, argv);
  if (rc != 0) {
    cfg_free(&cfg);
    return rc > 0 ? 0 : 2;
  }
  if (log_open(cfg.log_file, cfg.log_level) != 0) {
    fprintf(stderr, "tickerd: cannot open log file '%s'\n", cfg.log_file);
    cfg_free(&cfg);
    return 2;
  }
  static td_main m;
  running = &m;
  m.app.loop = uv_default_loop();
  m.app.cfg = &cfg;
  m.app.start_ms = uv_now(m.app.loop);
  lease_make_id(m.app.instance_id);
  log_attach(m.app.loop);
  if (start(&m) != 0) {
    /* a configuration the modules refused: exit without running the loop */
    log_close();
    return 2;
  }
  uv_run(m.app.loop, UV_RUN_DEFAULT);
  /* every handle is closed: free what they belonged to */
  server_free(m.app.server);
  tasks_free(m.app.tasks);
  hub_free(m.app.hub);
  candle_fan_free(m.app.candle_fan);   /* after the hub, whose clients it held */
  pipeline_free(m.app.pipeline);
  pace_free(m.app.pace);
  qstore_free(m.app.store);
  buf_pool_release();
  wsd_release();
  redis_tls_shutdown();
  web_free();
  uv_loop_close(m.app.loop);
  cfg_free(&cfg);
  return 0;
}
