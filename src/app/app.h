/* The one application object: everything that lives as long as the loop.
 * Handlers reach the modules through it (req->app). main.c builds it in
 * this order: store, publisher, pipeline, hub + subscriber, tasks, server,
 * then the feed; and takes it down in reverse on SIGTERM/SIGINT. */
#ifndef TD_APP_H
#define TD_APP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "http/http.h"
#include "base/td_limits.h"

struct td_server;
struct td_tasks;
struct td_pipeline;
struct td_hub;
struct td_publisher;
struct td_subscriber;
struct qstore;
struct sim_feed;
struct alpaca;
struct arest;
struct td_lease;
struct task_share;
struct candle_pub;
struct candle_fan;

typedef struct td_app {
  uv_loop_t *loop;
  td_config *cfg;
  struct td_server *server;
  struct td_tasks *tasks;
  struct task_share *share;   /* finished tasks in Redis (--share-tasks), or NULL */
  struct qstore *store;
  struct td_publisher *pub[TD_REDIS_PUBLISH_CONNS];  /* pub[0] also writes quotes:last and heartbeats */
  struct td_subscriber *sub;
  struct hr_reader *history;   /* resumes from the Redis streams; NULL with --memory-positions */
  struct td_pipeline *pipeline;
  struct ingest_pace *pace;   /* POST /quotes answers at Redis's pace */
  struct td_hub *hub;
  struct sim_feed *sim;       /* --feed sim */
  struct alpaca *alpaca;      /* --feed alpaca */
  struct arest *rest;         /* latest-quote fallback, when Alpaca credentials are set */
  struct td_lease *lease;     /* the upstream lease, with --feed sim or alpaca */
  struct candle_pub *candles; /* the bars built here (--candles); NULL when off */
  struct candle_fan *candle_fan; /* bars from Redis to this instance's clients */
  /* Alpaca's refusals counted by clients that a role change stopped (each
   * holder period has its own client): /status adds the live client's. */
  struct { uint64_t limit_refusals, auth_retries, throttled; } upstream_past;
  char instance_id[17];       /* random per process start (LEASE_ID_LEN hex digits) */
  uint64_t start_ms;          /* uv_now at start */
  bool shutting_down;
} td_app;

/* Handlers reach the application through the request: the server hands
 * every request the td_server_opts.user that main.c set to the app. */
static inline td_app *req_app(const td_request *req) { return req->user; }

#endif
