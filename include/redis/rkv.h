/* rkv: records with a TTL written to Redis in pipelined batches, and
 * lookups of them, on a connection of its own.
 *
 *   write   rkv_put() formats `SET key value PX ttl` into a bounded queue
 *           and returns; the queue goes out as one pipelined batch when it
 *           holds RKV_BATCH_MAX records or RKV_FLUSH_MS after the first
 *           record of the batch, whichever comes first. A put never waits
 *           and never costs a round trip of its own.
 *   read    rkv_get() sends `GET key` at once and calls back with the value,
 *           MISSING, or UNAVAILABLE (not connected, too many lookups out,
 *           no answer within the timeout, an error reply). A lookup can be
 *           cancelled (the HTTP client went away): its callback is then
 *           never called, and its reply, when it comes, is dropped.
 *
 * While Redis is away the queue keeps what it can (RKV_QUEUE_MAX records,
 * RKV_QUEUE_BYTES_MAX bytes) and sends it once connected; past that a new
 * record is dropped, counted, and logged (at most once per RKV_DROP_LOG_MS,
 * with the count). A batch that was sent but whose replies never came (the
 * connection dropped) is counted as failed, not resent: records are a
 * best-effort copy for other instances, and resending could reorder them.
 *
 * Memory: the queue's bytes, plus one small struct per lookup out (at most
 * RKV_GETS_MAX, counting the cancelled ones whose reply is still due). */
#ifndef TD_RKV_H
#define TD_RKV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "redis/redis_conn.h"

/* Records per pipelined batch: enough that a burst of finished tasks costs
 * one write per few hundred, small enough that a batch's replies do not
 * hold a lookup queued behind them for long. */
#define RKV_BATCH_MAX 256
/* Longest a record waits for its batch to fill. */
#define RKV_FLUSH_MS 100
/* Records waiting to be sent (Redis slow or away); past either bound a new
 * record is dropped. */
#define RKV_QUEUE_MAX 65536
#define RKV_QUEUE_BYTES_MAX (32u << 20)
/* Longest key and value accepted: records, not documents. */
#define RKV_KEY_MAX 256
#define RKV_VALUE_MAX (64u << 10)
/* Lookups out at once, answered or not; more answer UNAVAILABLE at once. */
#define RKV_GETS_MAX 1024
/* Default bound on a lookup's wait for its reply. */
#define RKV_GET_TIMEOUT_MS 1000
/* Drops and failures are logged at most this often, with their count. */
#define RKV_DROP_LOG_MS 60000

typedef struct td_rkv td_rkv;
typedef struct rkv_get rkv_get;

typedef enum { RKV_FOUND, RKV_MISSING, RKV_UNAVAILABLE } rkv_result;

/* `value` (len bytes, not NUL-terminated) only with RKV_FOUND, valid during
 * the call. `why` with RKV_UNAVAILABLE: a static string for logs. */
typedef void (*rkv_get_cb)(void *ud, rkv_result res, const char *value, size_t len, const char *why);

typedef struct rkv_options {
  uint32_t get_timeout_ms; /* 0: RKV_GET_TIMEOUT_MS */
  uint32_t flush_ms;       /* 0: RKV_FLUSH_MS (tests use others) */
  uint32_t batch_max;      /* 0: RKV_BATCH_MAX */
  uint32_t queue_max;      /* 0: RKV_QUEUE_MAX */
  rconn_options conn;      /* zero fields: the td_limits.h defaults */
} rkv_options;

typedef struct rkv_stats {
  uint64_t queued;    /* records accepted by rkv_put */
  uint64_t written;   /* records Redis answered OK */
  uint64_t dropped;   /* refused by rkv_put: queue full or too large */
  uint64_t failed;    /* sent, but an error reply or no reply (connection lost) */
  uint64_t batches;   /* pipelined batches sent */
  uint64_t waiting;   /* records in the queue now */
  uint64_t gets, found, missing, unavailable, timeouts, cancelled;
  uint64_t gets_out;  /* lookups whose reply is still due */
  bool connected;
} rkv_stats;

/* NULL on a bad URL (*err set) or OOM. Does not connect. */
td_rkv *rkv_new(uv_loop_t *loop, const char *redis_url, const rkv_options *opt, const char **err);
void rkv_start(td_rkv *kv);
/* Queues SET key value PX ttl_ms. 0, or UV_ENOBUFS (dropped, counted). */
int rkv_put(td_rkv *kv, const char *key, size_t klen, const char *value, size_t vlen, uint32_t ttl_ms);
/* Sends GET key now. The callback comes later, from the loop, exactly once
 * unless cancelled. NULL when it cannot be sent (not connected, too many
 * lookups, bad key): *why says why, and there is no callback. */
rkv_get *rkv_get_start(td_rkv *kv, const char *key, size_t klen, rkv_get_cb cb, void *ud, const char **why);
/* The callback will not be called; `g` must not be used after. */
void rkv_get_cancel(rkv_get *g);
void rkv_get_stats(const td_rkv *kv, rkv_stats *out);
/* Closes, frees `kv`, then done(ud). Records still queued or unwritten are
 * lost (a copy for other instances, not worth holding a shutdown for);
 * lookups still waiting are answered UNAVAILABLE first. */
void rkv_close(td_rkv *kv, void (*done)(void *ud), void *ud);

#endif
