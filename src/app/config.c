/* Configuration table: every option is one row, typed, with its flag, its
 * environment variable, its default (parsed by the same code as user input)
 * and its help text. --help walks the same table. */
#include "app/config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/td_limits.h"
#include "base/version.h"
#include "market/candle.h"
#include "redis/lease.h"
#include "redis/rkv.h"

typedef enum { OPT_STR, OPT_INT, OPT_I64, OPT_U64, OPT_DOUBLE, OPT_BOOL, OPT_FEED, OPT_PHASES } opt_type;

typedef struct {
  const char *flag;      /* without the leading "--" */
  const char *env;
  opt_type type;
  size_t offset;
  double min, max;       /* numeric bounds, inclusive */
  const char *def;       /* NULL: unset */
  const char *help;
  size_t set_offset;     /* for OPT_U64: bool that records "was given" (0: none) */
} opt_def;

#define OFF(f) offsetof(td_config, f)
#define STR(x) #x
#define XSTR(x) STR(x)

static const opt_def options[] = {
  {"host", "TICKERD_HOST", OPT_STR, OFF(host), 0, 0, "127.0.0.1", "address to listen on", 0},
  {"port", "TICKERD_PORT", OPT_INT, OFF(port), 0, 65535, "8000", "TCP port (0: any free port)", 0},
  {"max-connections", "TICKERD_MAX_CONNECTIONS", OPT_INT, OFF(max_connections), 1, 1000000,
   XSTR(TD_DEFAULT_MAX_CONNECTIONS), "open connections at most; past it 503 and close", 0},
  {"max-body-bytes", "TICKERD_MAX_BODY_BYTES", OPT_I64, OFF(max_body_bytes), 0, 1 << 30,
   XSTR(TD_HTTP_DEFAULT_MAX_BODY), "request body limit; past it 413", 0},
  {"header-timeout-ms", "TICKERD_HEADER_TIMEOUT_MS", OPT_INT, OFF(header_timeout_ms), 1, 3600000,
   XSTR(TD_DEFAULT_HEADER_TIMEOUT_MS), "time from accept (or the first byte of a later request) to its headers complete", 0},
  {"idle-timeout-ms", "TICKERD_IDLE_TIMEOUT_MS", OPT_INT, OFF(idle_timeout_ms), 1, 3600000,
   XSTR(TD_DEFAULT_IDLE_TIMEOUT_MS), "keep-alive idle time before a connection is closed", 0},
  {"write-timeout-ms", "TICKERD_WRITE_TIMEOUT_MS", OPT_INT, OFF(write_timeout_ms), 1, 3600000,
   XSTR(TD_HTTP_WRITE_TIMEOUT_MS), "time a peer with queued responses may go without reading any", 0},
  {"shutdown-grace-ms", "TICKERD_SHUTDOWN_GRACE_MS", OPT_INT, OFF(shutdown_grace_ms), 0, 3600000,
   XSTR(TD_DEFAULT_SHUTDOWN_GRACE_MS), "on SIGTERM/SIGINT, time left to in-flight responses", 0},
  {"log-file", "TICKERD_LOG_FILE", OPT_STR, OFF(log_file), 0, 0, "async_tasks.log",
   "JSON-lines log file besides stdout (\"\" or \"-\": none)", 0},
  {"log-level", "TICKERD_LOG_LEVEL", OPT_STR, OFF(log_level), 0, 0, "info", "debug, info, warn or error", 0},
  {"task-phases-ms", "TICKERD_TASK_PHASES_MS", OPT_PHASES, OFF(task_phases_ms), 0, 86400000, "5000,3000",
   "background task phase durations, comma separated", 0},
  {"task-error-rate", "TICKERD_TASK_ERROR_RATE", OPT_DOUBLE, OFF(task_error_rate), 0, 1, "0.1",
   "probability that a task fails with a simulated error", 0},
  {"task-seed", "TICKERD_TASK_SEED", OPT_U64, OFF(task_seed), 0, 0, NULL,
   "seed of the task failure draw (default: random)", OFF(task_seed_set)},
  {"max-tasks", "TICKERD_MAX_TASKS", OPT_I64, OFF(max_tasks), 1, 100000000, XSTR(TD_DEFAULT_MAX_TASKS),
   "active tasks at most; past it 503 with Retry-After", 0},
  {"task-retention-ms", "TICKERD_TASK_RETENTION_MS", OPT_I64, OFF(task_retention_ms), 0, 86400000LL * 30,
   XSTR(TD_DEFAULT_TASK_RETENTION_MS), "how long finished tasks stay queryable", 0},
  {"share-tasks", "TICKERD_SHARE_TASKS", OPT_BOOL, OFF(share_tasks), 0, 0, "true",
   "write finished tasks to Redis, so /tasks/{id} answers on every instance", 0},
  {"task-share-queue", "TICKERD_TASK_SHARE_QUEUE", OPT_INT, OFF(task_share_queue), 1, RKV_QUEUE_MAX,
   XSTR(RKV_QUEUE_MAX), "finished tasks waiting for Redis at most (more are dropped, counted)", 0},
  {"max-finished-tasks", "TICKERD_MAX_FINISHED_TASKS", OPT_I64, OFF(max_finished_tasks), 0, 100000000,
   XSTR(TD_DEFAULT_MAX_FINISHED_TASKS), "finished tasks kept at most (oldest freed first)", 0},
  {"redis-url", "REDIS_URL", OPT_STR, OFF(redis_url), 0, 0, "redis://127.0.0.1:6379",
   "redis://[user:password@]host:port[/db], rediss://... (TLS), unix:///path, redis[s]+sentinel://[user:password@]host:port,.../master[/db], "
   "or redis+cluster://[user:password@]host:port,host:port,... (rediss+cluster:// over TLS)", 0},
  {"redis-ca-file", "TICKERD_REDIS_CA_FILE", OPT_STR, OFF(redis_ca_file), 0, 0, NULL,
   "CA bundle for rediss:// (default: --ca-file, else the system store)", 0},
  {"redis-cert", "TICKERD_REDIS_CERT", OPT_STR, OFF(redis_cert), 0, 0, NULL,
   "client certificate (PEM) for rediss://, with --redis-key", 0},
  {"redis-key", "TICKERD_REDIS_KEY", OPT_STR, OFF(redis_key), 0, 0, NULL,
   "private key file (PEM) of --redis-cert", 0},
  {"channel-prefix", "TICKERD_CHANNEL_PREFIX", OPT_STR, OFF(channel_prefix), 0, 0, "quotes",
   "quotes go to <prefix>:<SYMBOL>", 0},
  {"feed", "TICKERD_FEED", OPT_FEED, OFF(feed), 0, 0, "sim", "sim, none (POST /quotes only) or alpaca", 0},
  {"lease-key", "TICKERD_LEASE_KEY", OPT_STR, OFF(lease_key), 0, 0, NULL,
   "Redis key of the upstream lease (default tickerd:lease:<feed>)", 0},
  {"lease-ttl-ms", "TICKERD_LEASE_TTL_MS", OPT_INT, OFF(lease_ttl_ms), LEASE_TTL_MIN_MS, LEASE_TTL_MAX_MS,
   XSTR(TD_DEFAULT_LEASE_TTL_MS), "upstream lease TTL: a dead holder is replaced within it", 0},
  {"lease-renew-ms", "TICKERD_LEASE_RENEW_MS", OPT_INT, OFF(lease_renew_ms), LEASE_RENEW_MIN_MS, LEASE_TTL_MAX_MS,
   XSTR(TD_DEFAULT_LEASE_RENEW_MS), "how often the holder renews the lease (< 90% of the TTL)", 0},
  {"symbols", "TICKERD_SYMBOLS", OPT_STR, OFF(symbols), 0, 0, "AAPL,MSFT,GOOGL,AAL",
   "symbols of the feed, comma separated (alpaca: * for all)", 0},
  {"sim-rate", "TICKERD_SIM_RATE", OPT_DOUBLE, OFF(sim_rate), 0, 10000000, XSTR(TD_DEFAULT_SIM_RATE),
   "simulated quotes per second, all symbols together", 0},
  {"sim-trades", "TICKERD_SIM_TRADES", OPT_DOUBLE, OFF(sim_trades), 0, 1, "0.25",
   "chance that a simulated quote is followed by a trade of its symbol", 0},
  {"candles", "TICKERD_CANDLES", OPT_BOOL, OFF(candles), 0, 0, "true",
   "build OHLCV bars from trades (quote mids without trades) and publish them to candles:<tf>:<SYMBOL>", 0},
  {"candle-timeframes", "TICKERD_CANDLE_TIMEFRAMES", OPT_STR, OFF(candle_timeframes), 0, 0, CANDLE_DEFAULT_TIMEFRAMES,
   "bar timeframes, comma separated (a number and s, m, h or d; at most 8, up to 1d)", 0},
  {"candle-grace-ms", "TICKERD_CANDLE_GRACE_MS", OPT_INT, OFF(candle_grace_ms), 0, 3600000,
   XSTR(CANDLE_DEFAULT_GRACE_MS), "late trades within this time after a bar's end still update it", 0},
  {"ingest-token", "TICKERD_INGEST_TOKEN", OPT_STR, OFF(ingest_token), 0, 0, NULL,
   "bearer token required by POST /quotes (default: none)", 0},
  {"ingest-max-backlog", "TICKERD_INGEST_MAX_BACKLOG", OPT_INT, OFF(ingest_max_backlog), 0, 10000000,
   XSTR(TD_DEFAULT_INGEST_MAX_BACKLOG), "unanswered PUBLISH commands past which POST /quotes answers wait (0: never)", 0},
  {"max-stream-clients", "TICKERD_MAX_STREAM_CLIENTS", OPT_INT, OFF(max_stream_clients), 1, 1000000,
   XSTR(TD_DEFAULT_MAX_STREAM_CLIENTS), "WebSocket + SSE clients at most", 0},
  {"max-client-symbols", "TICKERD_MAX_CLIENT_SYMBOLS", OPT_INT, OFF(max_client_symbols), 1, 100000,
   XSTR(TD_DEFAULT_MAX_CLIENT_SYMBOLS), "symbols one client may subscribe to", 0},
  {"ws-max-message", "TICKERD_WS_MAX_MESSAGE", OPT_I64, OFF(ws_max_message), 125, 16 << 20,
   XSTR(TD_DEFAULT_WS_MAX_MESSAGE), "largest WebSocket message accepted (bytes)", 0},
  {"client-soft-bytes", "TICKERD_CLIENT_SOFT_BYTES", OPT_I64, OFF(client_soft_bytes), 1024, 1LL << 32,
   XSTR(TD_DEFAULT_CLIENT_SOFT_BYTES), "queued bytes past which a client gets only the newest quote per symbol", 0},
  {"client-hard-bytes", "TICKERD_CLIENT_HARD_BYTES", OPT_I64, OFF(client_hard_bytes), 1024, 1LL << 32,
   XSTR(TD_DEFAULT_CLIENT_HARD_BYTES), "queued bytes past which a client is closed", 0},
  {"client-soft-ms", "TICKERD_CLIENT_SOFT_MS", OPT_INT, OFF(client_soft_ms), 1, 3600000,
   XSTR(TD_DEFAULT_CLIENT_SOFT_MS), "time a client may stay over the soft limit", 0},
  {"overload-behind-ms", "TICKERD_OVERLOAD_BEHIND_MS", OPT_INT, OFF(overload_behind_ms), 1, 3600000,
   XSTR(HUB_BEHIND_MS), "time the subscriber may read behind Redis before every client gets only the newest quote per symbol", 0},
  {"ping-interval-ms", "TICKERD_PING_INTERVAL_MS", OPT_INT, OFF(ping_interval_ms), 10, 3600000,
   XSTR(TD_DEFAULT_PING_INTERVAL_MS), "WebSocket ping / SSE keep-alive comment interval", 0},
  {"stream-idle-ms", "TICKERD_STREAM_IDLE_MS", OPT_INT, OFF(stream_idle_ms), 10, 3600000,
   XSTR(TD_DEFAULT_STREAM_IDLE_MS), "WebSocket client silent this long (no pong) is closed", 0},
  {"history-size", "TICKERD_HISTORY_SIZE", OPT_INT, OFF(history_size), 1, 1000000,
   XSTR(TD_DEFAULT_HISTORY_SIZE), "messages kept per symbol for recovery and charts", 0},
  {"history-ms", "TICKERD_HISTORY_MS", OPT_I64, OFF(history_ms), 1, 86400000,
   XSTR(TD_DEFAULT_HISTORY_MS), "age past which history is not replayed", 0},
  {"memory-positions", "TICKERD_MEMORY_POSITIONS", OPT_BOOL, OFF(memory_positions), 0, 0, "false",
   "single instance: seq/epoch and history in this process only, not in Redis streams", 0},
  {"alpaca-feed", "TICKERD_ALPACA_FEED", OPT_STR, OFF(alpaca_feed), 0, 0, "iex", "iex, sip, delayed_sip or test", 0},
  {"alpaca-url", "TICKERD_ALPACA_URL", OPT_STR, OFF(alpaca_url), 0, 0, NULL,
   "upstream stream URL (default wss://stream.data.alpaca.markets/v2/<feed>)", 0},
  {"alpaca-news-url", "TICKERD_ALPACA_NEWS_URL", OPT_STR, OFF(alpaca_news_url), 0, 0,
   "wss://stream.data.alpaca.markets/v1beta1/news", "news stream URL", 0},
  {"alpaca-channels", "TICKERD_ALPACA_CHANNELS", OPT_STR, OFF(alpaca_channels), 0, 0, "quotes",
   "quotes,trades,bars,updatedBars,dailyBars,statuses,lulds,corrections,cancelErrors", 0},
  {"alpaca-news", "TICKERD_ALPACA_NEWS", OPT_BOOL, OFF(alpaca_news), 0, 0, "false", "also stream news", 0},
  {"alpaca-rest-url", "TICKERD_ALPACA_REST_URL", OPT_STR, OFF(alpaca_rest_url), 0, 0,
   "https://data.alpaca.markets", "REST API base for latest-quote fallback", 0},
  {"ca-file", "TICKERD_CA_FILE", OPT_STR, OFF(ca_file), 0, 0, NULL, "CA bundle for TLS (default: system)", 0},
  {"auth", "TICKERD_AUTH", OPT_BOOL, OFF(auth), 0, 0, "false",
   "require a JWT (HS256, TICKERD_JWT_SECRET) from /ws and /stream subscribers", 0},
  {"allowed-origins", "TICKERD_ALLOWED_ORIGINS", OPT_STR, OFF(allowed_origins), 0, 0, NULL,
   "Origins allowed to open /ws, comma separated (with --auth; default: same host)", 0},
  {"web-root", "TICKERD_WEB_ROOT", OPT_STR, OFF(web_root), 0, 0, NULL,
   "dashboard assets directory (default: build/web next to the binary)", 0},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

/* Secrets: environment only, so that they never show in `ps` or a shell history. */
static const struct { const char *env; size_t offset; } secrets[] = {
  {"APCA_API_KEY_ID", OFF(alpaca_key_id)},
  {"APCA_API_SECRET_KEY", OFF(alpaca_secret_key)},
  {"TICKERD_JWT_SECRET", OFF(jwt_secret)},
  {"TICKERD_SENTINEL_USER", OFF(sentinel_user)},
  {"TICKERD_SENTINEL_PASSWORD", OFF(sentinel_password)},
};

const char *cfg_feed_name(td_feed_kind feed) {
  switch (feed) {
    case TD_FEED_SIM: return "sim";
    case TD_FEED_NONE: return "none";
    case TD_FEED_ALPACA: return "alpaca";
  }
  return "?";
}

static int parse_number(const char *s, double min, double max, bool integer, double *out) {
  char *end;
  errno = 0;
  double v = integer ? (double)strtoll(s, &end, 10) : strtod(s, &end);
  if (*s == '\0' || *end != '\0' || errno != 0 || isnan(v)) return -1;
  if (v < min || v > max) return -1;
  *out = v;
  return 0;
}

static int parse_phases(td_config *cfg, const char *s, const opt_def *o) {
  int n = 0;
  const char *p = s;
  while (*p) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < o->min || v > o->max || n == TD_MAX_TASK_PHASES) return -1;
    cfg->task_phases_ms[n++] = (int)v;
    if (*end == ',') end++;
    else if (*end != '\0') return -1;
    p = end;
  }
  if (n == 0) return -1;
  cfg->task_phase_count = n;
  return 0;
}

static int set_option(td_config *cfg, const opt_def *o, const char *value) {
  char *field = (char *)cfg + o->offset;
  double v;
  switch (o->type) {
    case OPT_STR: {
      char *copy = strdup(value);
      if (!copy) return -1;
      free(*(char **)field);
      *(char **)field = copy;
      return 0;
    }
    case OPT_INT:
      if (parse_number(value, o->min, o->max, true, &v)) return -1;
      *(int *)field = (int)v;
      return 0;
    case OPT_I64: {
      char *end;
      errno = 0;
      long long x = strtoll(value, &end, 10);
      if (*value == '\0' || *end || errno || x < (long long)o->min || x > (long long)o->max) return -1;
      *(int64_t *)field = x;
      return 0;
    }
    case OPT_U64: {
      char *end;
      errno = 0;
      if (*value == '\0' || *value == '-') return -1;
      unsigned long long x = strtoull(value, &end, 10);
      if (*end || errno) return -1;
      *(uint64_t *)field = x;
      if (o->set_offset) *(bool *)((char *)cfg + o->set_offset) = true;
      return 0;
    }
    case OPT_DOUBLE:
      if (parse_number(value, o->min, o->max, false, &v)) return -1;
      *(double *)field = v;
      return 0;
    case OPT_BOOL:
      if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on")) {
        *(bool *)field = true;
      } else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off")) {
        *(bool *)field = false;
      } else {
        return -1;
      }
      return 0;
    case OPT_FEED:
      if (!strcmp(value, "sim")) *(td_feed_kind *)field = TD_FEED_SIM;
      else if (!strcmp(value, "none")) *(td_feed_kind *)field = TD_FEED_NONE;
      else if (!strcmp(value, "alpaca")) *(td_feed_kind *)field = TD_FEED_ALPACA;
      else return -1;
      return 0;
    case OPT_PHASES:
      return parse_phases(cfg, value, o);
  }
  return -1;
}

static void print_bad(const opt_def *o, const char *value, const char *source) {
  fprintf(stderr, "tickerd: invalid value '%s' for --%s (%s)", value, o->flag, source);
  if (o->type == OPT_INT || o->type == OPT_I64 || o->type == OPT_DOUBLE || o->type == OPT_PHASES)
    fprintf(stderr, ": expected a number from %g to %g", o->min, o->max);
  fprintf(stderr, "; see --help\n");
}

static void print_help(void) {
  printf("tickerd %s: market-data fan-out service\n\nUsage: tickerd [options]\n\n", TD_VERSION);
  for (size_t i = 0; i < N_OPTIONS; i++) {
    const opt_def *o = &options[i];
    printf("  --%-22s %s\n  %-24s env %s", o->flag, o->help, "", o->env);
    if (o->def) printf(", default %s", *o->def ? o->def : "\"\"");
    printf("\n");
  }
  printf("\nSecrets, from the environment only:");
  for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) printf(" %s", secrets[i].env);
  printf("\n  --help, --version\n");
}

static const char *env_lookup(char *const *env, const char *name) {
  if (!env) return NULL;
  size_t n = strlen(name);
  for (; *env; env++)
    if (!strncmp(*env, name, n) && (*env)[n] == '=') return *env + n + 1;
  return NULL;
}

static const opt_def *find_flag(const char *name, size_t len) {
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (strlen(options[i].flag) == len && !strncmp(options[i].flag, name, len)) return &options[i];
  return NULL;
}

int cfg_load_env(td_config *cfg, int argc, char **argv, char *const *env) {
  memset(cfg, 0, sizeof(*cfg));
  for (size_t i = 0; i < N_OPTIONS; i++) {
    if (options[i].def && set_option(cfg, &options[i], options[i].def)) {
      fprintf(stderr, "tickerd: bad built-in default for --%s\n", options[i].flag);
      return -1;
    }
  }
  for (size_t i = 0; i < N_OPTIONS; i++) {
    const char *v = env_lookup(env, options[i].env);
    if (v && set_option(cfg, &options[i], v)) {
      print_bad(&options[i], v, options[i].env);
      return -1;
    }
  }
  for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
    const char *v = env_lookup(env, secrets[i].env);
    if (v && *v && !(*(char **)((char *)cfg + secrets[i].offset) = strdup(v))) return -1;
  }
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      print_help();
      return 1;
    }
    if (!strcmp(arg, "--version")) {
      printf("tickerd %s\n", TD_VERSION);
      return 1;
    }
    if (strncmp(arg, "--", 2)) {
      fprintf(stderr, "tickerd: unexpected argument '%s'; see --help\n", arg);
      return -1;
    }
    const char *name = arg + 2, *eq = strchr(name, '=');
    const opt_def *o = find_flag(name, eq ? (size_t)(eq - name) : strlen(name));
    if (!o) {
      fprintf(stderr, "tickerd: unknown option '%s'; see --help\n", arg);
      return -1;
    }
    const char *value = eq ? eq + 1 : NULL;
    if (!value) {
      if (i + 1 >= argc) {
        fprintf(stderr, "tickerd: option --%s needs a value\n", o->flag);
        return -1;
      }
      value = argv[++i];
    }
    if (set_option(cfg, o, value)) {
      print_bad(o, value, "flag");
      return -1;
    }
  }
  if (cfg->client_soft_bytes > cfg->client_hard_bytes) {
    fprintf(stderr, "tickerd: --client-soft-bytes must not exceed --client-hard-bytes\n");
    return -1;
  }
  if (strlen(cfg->channel_prefix) == 0 || strlen(cfg->channel_prefix) > TD_CHANNEL_PREFIX_MAX) {
    fprintf(stderr, "tickerd: invalid value for --channel-prefix: 1 to %d bytes\n", TD_CHANNEL_PREFIX_MAX);
    return -1;
  }
  if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") && strcmp(cfg->log_level, "warn") &&
      strcmp(cfg->log_level, "error")) {
    fprintf(stderr, "tickerd: invalid value '%s' for --log-level: debug, info, warn or error\n", cfg->log_level);
    return -1;
  }
  lease_options lo;
  char key[LEASE_KEY_MAX + 1];
  const char *bad = cfg_lease_opts(cfg, &lo, key, sizeof(key));
  if (bad) {
    fprintf(stderr, "tickerd: --lease-key/--lease-ttl-ms/--lease-renew-ms: %s\n", bad);
    return -1;
  }
  if (!cfg->redis_cert != !cfg->redis_key) {
    fprintf(stderr, "tickerd: --redis-cert and --redis-key go together\n");
    return -1;
  }
  if (cfg->auth && !cfg->jwt_secret) {
    fprintf(stderr, "tickerd: --auth needs TICKERD_JWT_SECRET in the environment\n");
    return -1;
  }
  return 0;
}

extern char **environ;

int cfg_load(td_config *cfg, int argc, char **argv) { return cfg_load_env(cfg, argc, argv, environ); }

void cfg_free(td_config *cfg) {
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (options[i].type == OPT_STR) {
      char **p = (char **)((char *)cfg + options[i].offset);
      free(*p);
      *p = NULL;
    }
  for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
    char **p = (char **)((char *)cfg + secrets[i].offset);
    free(*p);
    *p = NULL;
  }
}

void cfg_alpaca_opts(const td_config *cfg, alpaca_opts *out) {
  *out = (alpaca_opts){.key_id = cfg->alpaca_key_id,
                       .secret_key = cfg->alpaca_secret_key,
                       .feed = cfg->alpaca_feed,
                       .url = cfg->alpaca_url,
                       .news_url = cfg->alpaca_news_url,
                       .channels = cfg->alpaca_channels,
                       .news = cfg->alpaca_news,
                       .rest_url = cfg->alpaca_rest_url,
                       .ca_file = cfg->ca_file,
                       .symbols = cfg->symbols};
}

void cfg_redis_tls_opts(const td_config *cfg, redis_tls_opts *out) {
  *out = (redis_tls_opts){.ca_file = cfg->redis_ca_file ? cfg->redis_ca_file : cfg->ca_file,
                          .cert_file = cfg->redis_cert,
                          .key_file = cfg->redis_key};
}

void cfg_server_opts(const td_config *cfg, const td_route *routes, int n_routes, void *user, td_server_opts *out) {
  *out = (td_server_opts){.host = cfg->host,
                          .port = cfg->port,
                          .max_connections = cfg->max_connections,
                          .max_body_bytes = cfg->max_body_bytes,
                          .header_timeout_ms = (uint64_t)cfg->header_timeout_ms,
                          .idle_timeout_ms = (uint64_t)cfg->idle_timeout_ms,
                          .write_timeout_ms = (uint64_t)cfg->write_timeout_ms,
                          .routes = routes,
                          .n_routes = n_routes,
                          .user = user};
}

void cfg_hub_opts(const td_config *cfg, uv_loop_t *loop, const td_stream_access *access, td_hub_opts *out) {
  *out = (td_hub_opts){.loop = loop,
                       .channel_prefix = cfg->channel_prefix,
                       .max_stream_clients = cfg->max_stream_clients,
                       .max_client_symbols = cfg->max_client_symbols,
                       .history_size = cfg->history_size,
                       .client_soft_bytes = cfg->client_soft_bytes,
                       .client_hard_bytes = cfg->client_hard_bytes,
                       .client_soft_ms = cfg->client_soft_ms,
                       .overload_behind_ms = cfg->overload_behind_ms,
                       .ws_max_message = cfg->ws_max_message,
                       .ping_interval_ms = cfg->ping_interval_ms,
                       .stream_idle_ms = cfg->stream_idle_ms,
                       .access = access};
}

const char *cfg_lease_opts(const td_config *cfg, lease_options *out, char *key, size_t key_size) {
  if (cfg->lease_key) snprintf(key, key_size, "%s", cfg->lease_key);
  else snprintf(key, key_size, "tickerd:lease:%s", cfg_feed_name(cfg->feed));
  *out = (lease_options){.key = key, .ttl_ms = (uint32_t)cfg->lease_ttl_ms, .renew_ms = (uint32_t)cfg->lease_renew_ms};
  if (cfg->lease_key && strlen(cfg->lease_key) >= key_size) return "lease key too long";
  return lease_check_options(out);
}
