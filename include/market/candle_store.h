/* candle_store: bars in Redis, so that every instance answers history.
 *
 * Only the upstream lease holder builds bars (candle_pub.h). Each bar it
 * hands over (the in-progress bar at most once a second, the bar once more
 * when it closes) goes through one Lua script (EVALSHA, pipelined on a
 * connection of its own) that, atomically:
 *   - PUBLISHes it to candles:<tf>:<SYMBOL>, for every instance's clients
 *     (SPUBLISH on a Redis Cluster, below);
 *   - puts it in the sorted set tickerd:{candles:<tf>:<SYMBOL>}:bars
 *     (score: the bar's start), replacing the bar of the same start;
 *   - trims that set to the newest `history` bars (CANDLE_DEFAULT_HISTORY,
 *     as the engine keeps) and gives it a TTL (the span its bars cover,
 *     plus CSTORE_TTL_EXTRA_MS), so a symbol that stops trading goes.
 * The channel is the key's hash tag: one slot per series.
 *
 * On a Redis Cluster (redis+cluster://, rediss+cluster://) the store reads
 * the slot map (redis/cluster.h) and holds one connection per primary. The
 * channel `candles:<tf>:<SYMBOL>` has no hash tag of its own, so it hashes
 * to the slot of its key's tag: the script of a series runs on that slot's
 * primary and publishes with SPUBLISH (the script's ARGV[2]), touching
 * one slot. Reads go to the key's primary too.
 *
 * In classic mode (one server, or Sentinel's primary) the in-progress
 * bars are batched: up to CSTORE_BATCH_MAX in one call of the same
 * script, sent when the batch is full, before any closed bar (which must
 * not be overwritten by an older in-progress one), and at cstore_flush,
 * which candle_pub calls after each timer tick (the only place the engine
 * hands in-progress bars over). One command and one reply per batch
 * instead of per bar: a second's ~6,000 in-progress bars over 1,000
 * symbols cost tickerd ~1,000 instructions each in the command and its
 * reply alone.
 *
 * Any instance reads a series with ZRANGE (cstore_read_start): a standby,
 * or one started after the bars were made, answers GET /candles and the
 * subscribe's "history" from there.
 *
 * While Redis is away (or the connection's unwritten bytes pass
 * CSTORE_MAX_PENDING_BYTES) closed bars wait in a FIFO of at most
 * CSTORE_QUEUE_MAX (then dropped, counted) and go out in order once the
 * connection is READY: a closed bar is never replaced by the next bar's
 * first update. A closed bar is kept until Redis answers it: one whose
 * connection was lost, or that met CLUSTERDOWN/TRYAGAIN/LOADING, waits again
 * (ahead of the bars closed since) and goes when a connection is READY
 * again, else is retried every CSTORE_RETRY_MS; MOVED (sent to the slot's new
 * owner), ASK (ASKING, then sent to the node named) and NOSCRIPT (the
 * script loaded again) send it again, at most CSTORE_BOUNCES_MAX times.
 * A bar retried this way may be published twice, or after a later bar
 * (the set keeps one bar per start). In-progress bars are not queued
 * (counted as skipped): the bar is sent again at its next change, or when
 * it closes. */
#ifndef TD_CANDLE_STORE_H
#define TD_CANDLE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Closed bars waiting for Redis at most (~400 bytes each with the command:
 * 26 MB; a minute of 1 s bars of 1,000 symbols). */
#define CSTORE_QUEUE_MAX 65536
/* Unwritten command bytes past which bars wait as if Redis were away: a
 * socket that stopped draining must not grow hiredis's buffer unbounded. */
#define CSTORE_MAX_PENDING_BYTES (1024 * 1024)
/* A series' key lives this long past the span of its bars (history x tf)
 * after its last bar: a quiet symbol's history survives a night. */
#define CSTORE_TTL_EXTRA_MS (24 * 3600 * 1000LL)
/* "tickerd:{" + channel + "}:bars" */
/* Closed bars sent on one connection and not answered yet, at most; past
 * it they wait in the queue. */
#define CSTORE_KEPT_MAX 4096
/* A closed bar is sent again after MOVED, ASK or NOSCRIPT at most this
 * many times (a slot moving back and forth must not loop). */
#define CSTORE_BOUNCES_MAX 3
/* Closed bars whose connection was lost, or whose cluster was down, are
 * routed again after this long (then by the slot map read meanwhile). */
#define CSTORE_RETRY_MS 250
/* A Cluster primary's connection retries at most this far apart: each
 * failed attempt reads the map again, and a replica's promotion must be
 * seen soon after it happened (as the shard publishers do). */
#define CSTORE_SHARD_BACKOFF_MAX_MS 500
#define CSTORE_KEY_PREFIX "tickerd:{"
#define CSTORE_KEY_SUFFIX "}:bars"

typedef struct cstore cstore;
typedef struct cstore_read cstore_read;

typedef struct {
  bool connected;       /* READY; on a Cluster: the map read and every primary READY */
  uint64_t sent;        /* bars sent (to be published and stored) */
  uint64_t stored;      /* bars Redis stored (its answers) */
  uint64_t errors;      /* error replies, or no reply (connection lost) */
  uint64_t queued;      /* closed bars that waited for Redis */
  uint64_t resent;      /* closed bars sent again (connection lost, cluster down, MOVED, ASK, NOSCRIPT) */
  uint64_t waiting;     /* closed bars waiting now */
  uint64_t dropped;     /* closed bars given up: the queue full, an error, bounced too often */
  uint64_t skipped;     /* in-progress bars not sent: Redis away or behind */
  uint64_t reads, read_failures;
} cstore_stats;

/* Connects at once (on a redis+cluster:// URL, to every primary the slot
 * map names). `history`: bars kept per series. NULL on a bad URL. */
cstore *cstore_new(uv_loop_t *loop, const char *redis_url, uint32_t history);
/* Publishes and stores one bar (its JSON) of series `channel`; start and
 * tf_s in seconds. 0 sent, 1 queued, UV_EAGAIN skipped (in progress, Redis
 * away), UV_ENOBUFS dropped (queue full), UV_ENOMEM. */
int cstore_put(cstore *s, const char *channel, size_t n, const char *json, size_t len, int64_t start, int64_t tf_s,
               bool closed);
/* Sends the in-progress bars batched so far (classic mode; see above). */
void cstore_flush(cstore *s);

/* A read's answer: ok false when Redis did not answer (not connected, lost,
 * an error); else the series' newest bars (at most the limit), oldest
 * first, as the JSON they were stored with, valid during the call. */
typedef void (*cstore_read_cb)(void *ud, bool ok, const char *const *bars, const size_t *lens, size_t n);
/* Reads the newest `limit` bars of `channel`. cb runs once, later, unless
 * cancelled; NULL when no read could be sent (not connected): no callback. */
cstore_read *cstore_read_start(cstore *s, const char *channel, size_t n, uint32_t limit, cstore_read_cb cb, void *ud);
/* The callback will not run; `r` must not be used after. */
void cstore_read_cancel(cstore_read *r);

void cstore_get_stats(const cstore *s, cstore_stats *out);
/* Queued bars are dropped; reads out are answered ok false (unless
 * cancelled); frees, then done(ud). */
void cstore_close(cstore *s, void (*done)(void *), void *ud);

#endif
