/* candle_store: bars in Redis, so that every instance answers history.
 *
 * Only the upstream lease holder builds bars (candle_pub.h). Each bar it
 * hands over (the in-progress bar at most once a second, the bar once more
 * when it closes) goes through one Lua script (EVALSHA, pipelined on a
 * connection of its own) that, atomically:
 *   - PUBLISHes it to candles:<tf>:<SYMBOL>, for every instance's clients;
 *   - puts it in the sorted set tickerd:{candles:<tf>:<SYMBOL>}:bars
 *     (score: the bar's start), replacing the bar of the same start;
 *   - trims that set to the newest `history` bars (CANDLE_DEFAULT_HISTORY,
 *     as the engine keeps) and gives it a TTL (the span its bars cover,
 *     plus CSTORE_TTL_EXTRA_MS), so a symbol that stops trading goes.
 * The channel is the key's hash tag: one slot per series.
 *
 * Any instance reads a series with ZRANGE (cstore_read_start): a standby,
 * or one started after the bars were made, answers GET /candles and the
 * subscribe's "history" from there.
 *
 * While Redis is away (or the connection's unwritten bytes pass
 * CSTORE_MAX_PENDING_BYTES) closed bars wait in a FIFO of at most
 * CSTORE_QUEUE_MAX (then dropped, counted) and go out in order once the
 * connection is READY: a closed bar is never replaced by the next bar's
 * first update. In-progress bars are not queued (counted as skipped): the
 * bar is sent again at its next change, or when it closes. */
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
#define CSTORE_KEY_PREFIX "tickerd:{"
#define CSTORE_KEY_SUFFIX "}:bars"

typedef struct cstore cstore;
typedef struct cstore_read cstore_read;

typedef struct {
  bool connected;
  uint64_t sent;        /* scripts sent (bars published and stored) */
  uint64_t stored;      /* scripts Redis answered OK */
  uint64_t errors;      /* error replies, or no reply (connection lost) */
  uint64_t queued;      /* closed bars that waited for Redis */
  uint64_t waiting;     /* closed bars waiting now */
  uint64_t dropped;     /* closed bars refused: the queue was full */
  uint64_t skipped;     /* in-progress bars not sent: Redis away or behind */
  uint64_t reads, read_failures;
} cstore_stats;

/* Connects at once. `history`: bars kept per series. NULL on a bad URL. */
cstore *cstore_new(uv_loop_t *loop, const char *redis_url, uint32_t history);
/* Publishes and stores one bar (its JSON) of series `channel`; start and
 * tf_s in seconds. 0 sent, 1 queued, UV_EAGAIN skipped (in progress, Redis
 * away), UV_ENOBUFS dropped (queue full), UV_ENOMEM. */
int cstore_put(cstore *s, const char *channel, size_t n, const char *json, size_t len, int64_t start, int64_t tf_s,
               bool closed);

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
