/* Configuration: one table of typed options (config.c) drives parsing of
 * flags and environment variables, --help, and the "config" block that
 * /status reports. A flag wins over its environment variable. */
#ifndef TD_CONFIG_H
#define TD_CONFIG_H

#include "http/server.h"
#include "market/alpaca_rest.h"
#include "redis/lease.h"
#include "redis/redis_tls.h"
#include "stream/hub.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_MAX_TASK_PHASES 8

typedef enum { TD_FEED_SIM, TD_FEED_NONE, TD_FEED_ALPACA } td_feed_kind;

typedef struct td_config {
  /* HTTP server */
  char *host;
  int port;
  int max_connections;
  int64_t max_body_bytes;
  int header_timeout_ms;
  int idle_timeout_ms;
  int write_timeout_ms;
  int shutdown_grace_ms;
  /* logging */
  char *log_file;            /* "" or "-": no file */
  char *log_level;           /* debug | info | warn | error */
  /* background tasks */
  int task_phases_ms[TD_MAX_TASK_PHASES];
  int task_phase_count;
  double task_error_rate;
  uint64_t task_seed;
  bool task_seed_set;
  int64_t max_tasks;
  int64_t task_retention_ms;
  int64_t max_finished_tasks;
  bool share_tasks;          /* finished tasks copied to Redis (task_share.c) */
  int task_share_queue;      /* records waiting for Redis at most */
  /* quote pipeline */
  char *redis_url;
  char *redis_ca_file;       /* rediss:// trust; NULL: --ca-file, else the system store */
  char *redis_cert;          /* rediss:// client certificate (PEM), with redis_key */
  char *redis_key;           /* its private key file; the key is never logged */
  char *channel_prefix;      /* "quotes" -> quotes:AAPL */
  td_feed_kind feed;
  char *lease_key;           /* NULL: tickerd:lease:<feed> */
  int lease_ttl_ms;
  int lease_renew_ms;
  char *symbols;             /* comma separated */
  double sim_rate;           /* quotes per second, all symbols together */
  double sim_trades;         /* chance that a simulated quote is followed by a trade */
  /* candles */
  bool candles;
  char *candle_timeframes;   /* "1s,5s,1m,5m,15m,1h" */
  int candle_grace_ms;
  char *ingest_token;        /* secret: never logged */
  int ingest_max_backlog;    /* unanswered PUBLISH before POST /quotes answers wait */
  /* streaming */
  int max_stream_clients;
  int max_client_symbols;
  int64_t ws_max_message;
  int64_t client_soft_bytes;
  int64_t client_hard_bytes;
  int client_soft_ms;
  int overload_behind_ms;
  int ping_interval_ms;
  int stream_idle_ms;
  int history_size;
  int64_t history_ms;
  /* upstream (Alpaca) */
  char *alpaca_feed;
  char *alpaca_url;
  char *alpaca_news_url;
  char *alpaca_channels;
  bool alpaca_news;
  char *alpaca_rest_url;
  char *ca_file;
  char *alpaca_key_id;       /* APCA_API_KEY_ID: secret, never logged */
  char *alpaca_secret_key;   /* APCA_API_SECRET_KEY: secret, never logged */
  /* access control */
  bool auth;
  bool memory_positions;     /* positions and history of this process only (no Lua script, no streams) */
  char *jwt_secret;          /* TICKERD_JWT_SECRET: secret, never logged */
  char *sentinel_user;       /* TICKERD_SENTINEL_USER: the Sentinels' ACL user */
  char *sentinel_password;   /* TICKERD_SENTINEL_PASSWORD: secret, never logged */
  char *allowed_origins;     /* comma separated; empty: same host only */
  char *web_root;            /* dashboard assets (build/web) */
} td_config;

/* Fills `cfg` with defaults, then the environment, then argv.
 * Returns 0, 1 when --help/--version printed and the caller should exit 0,
 * or -1 after printing a message naming the option (caller exits 2). */
int cfg_load(td_config *cfg, int argc, char **argv);
void cfg_free(td_config *cfg);
const char *cfg_feed_name(td_feed_kind feed);

/* For tests: parse without the process environment. `env` is a
 * NULL-terminated array of "NAME=value" strings (may be NULL). */
int cfg_load_env(td_config *cfg, int argc, char **argv, char *const *env);

/* The Alpaca clients' part of the configuration (strings borrowed from cfg). */
void cfg_alpaca_opts(const td_config *cfg, alpaca_opts *out);
/* rediss:// settings: --redis-ca-file, else --ca-file, else the system store. */
void cfg_redis_tls_opts(const td_config *cfg, redis_tls_opts *out);
/* The server's options: the configured address, limits and timeouts, the
 * route table, and `user` for req->user. */
void cfg_server_opts(const td_config *cfg, const td_route *routes, int n_routes, void *user, td_server_opts *out);
/* The upstream lease's options; the key is written to key[0..key_size).
 * NULL, or why they cannot work. */
const char *cfg_lease_opts(const td_config *cfg, lease_options *out, char *key, size_t key_size);
/* The stream layer's options, with the app's access control. */
void cfg_hub_opts(const td_config *cfg, uv_loop_t *loop, const td_stream_access *access, td_hub_opts *out);

#endif
