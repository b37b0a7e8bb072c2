/* candle_pub: the candle engine (candle.h) on the loop. It reads the
 * messages the pipeline publishes (trades, quotes, corrections, cancels),
 * runs the engine's timer, and PUBLISHes each bar to
 *
 *     candles:<tf>:<SYMBOL>      e.g. candles:1m:AAPL
 *
 * as one JSON object (candle_pub_bar_json): the in-progress bar at most once
 * per second, and the bar once more, final, with "closed": true.
 *
 * With several instances only the holder of the upstream lease aggregates
 * (the pipeline checks before handing a message over), so each bar is
 * published once; every instance's clients get the bars from Redis.
 *
 * Bars go through a connection of their own (candle_store.h; one per
 * primary on a Redis Cluster, with SPUBLISH), whose one script per bar
 * PUBLISHes it and keeps it in Redis for other instances' history; closed
 * bars wait in order while Redis is away. The quote
 * publishers' counters stay about quotes. */
#ifndef TD_CANDLE_PUB_H
#define TD_CANDLE_PUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "market/candle.h"
#include "market/stream_msg.h"

#define CANDLE_CHANNEL_PREFIX "candles"
/* How often the engine's timer runs: closes quiet symbols' bars within a
 * quarter second of end + grace, and sends in-progress bars (rate limited
 * to one a second per series by the engine). */
#define CANDLE_TICK_MS 250
/* "candles:" + "86400s" + ":" + symbol */
#define CANDLE_CHANNEL_MAX (sizeof(CANDLE_CHANNEL_PREFIX) + CANDLE_TF_NAME_MAX + 1 + TD_SYMBOL_MAX + 1)
/* The longest bar JSON: 9 numbers of at most 24 characters, a time, names. */
#define CANDLE_JSON_MAX 512

typedef struct candle_pub candle_pub;

typedef struct {
  uint64_t bars;             /* bars handed to the store (sent or queued) */
  uint64_t refused;          /* not sent: in progress while Redis is away, or the queue full */
} candle_pub_stats;

/* Connects its own publisher to `redis_url` (NULL: no publishing, for
 * benchmarks of the engine alone). NULL with err on a bad option or URL. */
candle_pub *candle_pub_new(uv_loop_t *loop, const char *redis_url, const candle_opts *o, char *err, size_t err_len);
/* Stops the timer and closes the publisher; frees, then done(ud) once. */
void candle_pub_close(candle_pub *c, void (*done)(void *), void *ud);

/* candle_prefetch for a message of symbol id to come (candle_pub_msg). */
void candle_pub_prefetch(const candle_pub *c, uint32_t id);

/* A message the pipeline published, during its parser callback (its
 * numbers are read from the parsed message, smsg_msg_number); `id` is its
 * symbol's in the table given as candle_opts.syms. Kinds other than quote,
 * trade, correction and cancel are ignored. */
void candle_pub_msg(candle_pub *c, const smsg_msg *m, uint32_t id);

const candle_engine *candle_pub_engine(const candle_pub *c);
void candle_pub_get_stats(const candle_pub *c, candle_pub_stats *out);
/* Where the bars are published and kept (candle_store.h): the holder
 * writes there, any instance reads a series back. NULL without Redis. */
struct cstore;
struct cstore *candle_pub_store(const candle_pub *c);

/* The JSON of a bar, at most CANDLE_JSON_MAX bytes into out (NUL ended);
 * returns its length:
 * {"S":"AAPL","tf":"1m","t":"2026-12-03T10:01:00Z","o":..,"h":..,"l":..,
 *  "c":..,"v":..,"n":..,"vw":..,"src":"trades","closed":false} */
size_t candle_pub_bar_json(char *out, const char *sym, size_t sym_len, const char *tf, const candle_bar *b);

#endif
