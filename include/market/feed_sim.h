/* The simulated feed: a random walk of bid/ask quotes for a list of symbols,
 * produced on a libuv timer as Alpaca-style JSON array text and handed to a
 * callback, the same entry a real upstream's frames take (smsg stream mode).
 *
 * `rate` quotes per second in total, round-robin over the symbols. Every
 * SIM_TICK_MS the timer produces the quotes due for the time elapsed since
 * the last tick (fractional quotes carry over), in buffers of at most
 * SIM_BATCH_MAX quotes. Prices, sizes, exchanges and their order are a pure
 * function of the seed; only the timestamps come from the wall clock. */
#ifndef TD_FEED_SIM_H
#define TD_FEED_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/td_limits.h"

/* 1000 ticks a second: quotes come in small batches, each stamped when it is
 * made, so none waits behind a large batch before it is published (the
 * publish-latency benchmark measures from that stamp). A wake-up per ms
 * costs the loop little. */
#define SIM_TICK_MS 1
/* A loop that stalled (a debugger, a long callback) does not get the whole
 * backlog at once: at most this much elapsed time is made up per tick. */
#define SIM_MAX_CATCHUP_MS 100
/* Quotes per delivered buffer. Each buffer is parsed in one go by the
 * receiver; 1000 quotes (~175 KB) amortizes the per-call cost while keeping
 * the scratch buffer small. */
#define SIM_BATCH_MAX 1000
/* Quotes per tick at most: past it the quotes due are shed (counted), so a
 * rate the process cannot parse cannot stall the loop for seconds. */
#define SIM_MAX_PER_TICK 20000
/* Longest JSON text of one simulated quote (~175 bytes in practice). */
#define SIM_QUOTE_MAX_BYTES 256

typedef void (*sim_deliver_cb)(void *ud, const char *json, size_t len);
typedef void (*sim_close_cb)(void *ud);
typedef struct sim_feed sim_feed;

typedef struct sim_stats {
  uint64_t ticks;
  uint64_t quotes;           /* quotes produced */
  uint64_t batches;          /* deliver calls */
  uint64_t bytes;            /* JSON bytes delivered */
  uint64_t shed;             /* quotes due past SIM_MAX_PER_TICK, not produced */
  uint64_t trades;           /* trades produced (besides the quotes) */
} sim_stats;

/* symbols_csv: "AAPL,MSFT" (spaces around names ignored), at most
 * TD_MAX_SYMBOLS valid symbols. rate >= 0 quotes/s (0: paused). Returns NULL
 * with *err set ("no symbols", "invalid symbol", "too many symbols",
 * "invalid rate", "out of memory"). The feed is freed by sim_close. */
sim_feed *sim_new(uv_loop_t *loop, const char *symbols_csv, double rate, uint64_t seed,
                  sim_deliver_cb deliver, void *ud, const char **err);
int sim_start(sim_feed *s);
void sim_stop(sim_feed *s);
/* Takes effect at the next tick; 0 pauses. Ignored when negative or NaN. */
void sim_set_rate(sim_feed *s, double rate);
double sim_rate(const sim_feed *s);
/* Each quote is followed, with this probability (0 to 1; 0 by default), by
 * a trade of its symbol at a price between its bid and ask, so that candles
 * have trades to be built from. Ignored outside [0, 1]. */
void sim_set_trades(sim_feed *s, double per_quote);
/* Stops, closes the timer, frees the feed, then calls cb(ud) (cb may be NULL).
 * Safe from inside the deliver callback: no further buffer is delivered. */
void sim_close(sim_feed *s, sim_close_cb cb);
void sim_get_stats(const sim_feed *s, sim_stats *out);

/* Quotes due for `elapsed_ms` at `rate` per second, plus *carry (the
 * fraction left over from the previous tick, updated; in [0, 1)). */
uint64_t sim_quotes_due(double rate, uint64_t elapsed_ms, double *carry);

#endif
