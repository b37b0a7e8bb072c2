/* candle: OHLCV bars per symbol and timeframe, built from trades (or, for a
 * symbol that has no trades, from quote mid-prices).
 *
 * The engine is pure: no loop, no Redis, no clock of its own. Every call
 * carries the message's exchange time `t` and the wall-clock time `now`
 * (both nanoseconds since 1970, UTC), so tests drive it with any clock.
 *
 * Time rules (docs: README "Candles"):
 *   - A bar of timeframe tf covers [start, start + tf) of exchange time,
 *     start a multiple of tf since 1970 (a trade exactly on a boundary opens
 *     the new bar).
 *   - Each symbol has a horizon: the latest exchange time it has seen, moved
 *     on by the timer at the wall clock's pace since that message arrived (a
 *     quiet symbol's time goes on; a delayed feed stays delayed).
 *   - A bar closes when the horizon reaches end + grace. Until then a trade
 *     with an earlier time (late, out of order) still updates it; after, it
 *     is counted as late and not applied.
 *   - Corrections and cancels adjust the open bar that holds their `t`.
 *
 * Symbols are known by their id in a symbol table (symtab.h): tickerd
 * gives the engine the process's table and the ids the pipeline interned,
 * so a symbol is not hashed again here; per-symbol state sits in an array
 * by id. The by-name calls (tests, tools) intern in that table first.
 *
 * Memory is bounded: at most `max_symbols` symbols, `history` bars per
 * symbol and timeframe (older ones are forgotten). */
#ifndef TD_CANDLE_H
#define TD_CANDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Timeframes at most (the default list has six). */
#define CANDLE_MAX_TF 8
/* Bars kept per symbol and timeframe by default: a day of 5 m bars, five
 * hours of 1 m bars; what a chart shows at once. */
#define CANDLE_DEFAULT_HISTORY 300
#define CANDLE_DEFAULT_TIMEFRAMES "1s,5s,1m,5m,15m,1h"
/* Default grace: late trades within 2 s of a bar's end still count (a feed's
 * out-of-order window is milliseconds; a POST batch may straggle longer). */
#define CANDLE_DEFAULT_GRACE_MS 2000
/* The longest timeframe accepted: one day. */
#define CANDLE_TF_MAX_S 86400
/* A trade stamped further ahead of our clock than this is bad input: it
 * would close every open bar of its symbol. */
#define CANDLE_FUTURE_MAX_NS (60 * 1000000000LL)
/* An in-progress bar is handed to on_bar at most this often per series. */
#define CANDLE_LIVE_INTERVAL_NS (1000 * 1000000LL)
/* One bad-input log line per symbol per this long; the rest are counted. */
#define CANDLE_LOG_INTERVAL_NS (60 * 1000000000LL)
/* Trades remembered per symbol by id, for corrections and cancels that
 * name the trade they touch (Alpaca's "oi", "i"): the last 256, 4 KiB per
 * traded symbol. A correction comes seconds after its trade, when it comes;
 * one for an older trade finds it forgotten (counted, adjust_unknown). */
#define CANDLE_TRADE_IDS 256
/* "15m" and the like; "86400s" at most. */
#define CANDLE_TF_NAME_MAX 8

enum {
  CANDLE_F_CLOSED = 1,    /* final: no trade will change it */
  CANDLE_F_MID = 2,       /* built from quote mid-prices, not trades */
  CANDLE_F_DIRTY = 4,     /* changed since it was last handed to on_bar */
  CANDLE_F_ADJUSTED = 8,  /* a correction or cancel touched it */
};

typedef struct {
  int64_t start;            /* seconds since 1970, a multiple of the timeframe */
  double open, high, low, close;
  double pv;                /* sum of price x size: VWAP = pv / volume */
  uint64_t volume;          /* shares (0 for mid bars) */
  uint32_t count;           /* trades (mid bars: quotes) */
  uint8_t flags;            /* CANDLE_F_* */
  int64_t first_ns, last_ns; /* exchange times of the open and the close */
} candle_bar;

typedef enum {
  CANDLE_BAD_SIZE,          /* size <= 0 */
  CANDLE_BAD_PRICE,         /* price not finite or <= 0 */
  CANDLE_BAD_FUTURE,        /* timestamp more than CANDLE_FUTURE_MAX_NS ahead */
  CANDLE_BAD_COUNT
} candle_bad_reason;

typedef struct {
  uint64_t trades;          /* trades applied to bars */
  uint64_t quotes;          /* quotes applied to mid bars */
  uint64_t late;            /* trades or quotes after their bar closed (or older than the history) */
  uint64_t bad[CANDLE_BAD_COUNT];
  uint64_t adjusted;        /* corrections and cancels applied */
  uint64_t adjust_late;     /* corrections and cancels whose bar was closed or absent */
  uint64_t adjust_unmatched; /* cancels or corrections larger than their bar */
  uint64_t adjust_unknown;  /* by id: the trade is not among the symbol's last CANDLE_TRADE_IDS */
  uint64_t closed;          /* bars closed */
  uint64_t emitted;         /* on_bar calls */
  uint64_t refused;         /* messages of symbols past max_symbols */
  uint64_t symbols;
  uint64_t bytes;           /* memory held by symbols and bars */
} candle_stats;

/* Called for an in-progress bar (at most every CANDLE_LIVE_INTERVAL_NS per
 * series, from candle_tick) and once for each bar as it closes. `bar` is
 * valid during the call. */
typedef void (*candle_bar_cb)(void *ud, const char *sym, size_t sym_len, int tf, const candle_bar *bar);

typedef struct {
  const char *timeframes;   /* "1s,5s,1m": NULL for CANDLE_DEFAULT_TIMEFRAMES */
  int64_t grace_ms;         /* < 0: CANDLE_DEFAULT_GRACE_MS */
  uint32_t history;         /* 0: CANDLE_DEFAULT_HISTORY */
  uint32_t max_symbols;     /* 0: TD_MAX_SYMBOLS; at most symtab_max(syms) */
  struct symtab *syms;      /* borrowed, outlives the engine; NULL: the engine makes its own */
  candle_bar_cb on_bar;     /* may be NULL */
  void *ud;
} candle_opts;

typedef struct candle_engine candle_engine;

/* NULL on a bad timeframe list (with the reason in err) or OOM. */
candle_engine *candle_new(const candle_opts *o, char *err, size_t err_len);
void candle_free(candle_engine *e);

/* Seconds of "1s", "5m", "1h", "1d"; -1 for anything else. */
int64_t candle_tf_parse(const char *s, size_t n);
int candle_tf_count(const candle_engine *e);
int64_t candle_tf_seconds(const candle_engine *e, int tf);
const char *candle_tf_name(const candle_engine *e, int tf);
/* The index of timeframe "1m" in this engine, or -1. */
int candle_tf_find(const candle_engine *e, const char *s, size_t n);

/* By symbol id (in the engine's table: candle_opts.syms). */
void candle_trade_id(candle_engine *e, uint32_t id, int64_t t_ns, double price, int64_t size, int64_t now_ns);
void candle_quote_id(candle_engine *e, uint32_t id, int64_t t_ns, double bid, double ask, int64_t now_ns);
void candle_correct_id(candle_engine *e, uint32_t id, int64_t t_ns, double op, int64_t os, double cp, int64_t cs,
                       int64_t now_ns);
void candle_cancel_id(candle_engine *e, uint32_t id, int64_t t_ns, double price, int64_t size, int64_t now_ns);

/* Starts loading what a message of symbol id will write (the symbol's
 * first lines, its trade-id slot) without waiting for it, so that the
 * misses overlap the caller's work before it hands the message over: at
 * 1,000 symbols each is out of cache when its trade comes. */
void candle_prefetch(const candle_engine *e, uint32_t id);

/* By trade id (Alpaca's "i" of a trade, "oi" of a correction, "i" of a
 * cancel), what the feed does: the engine remembers each applied trade's
 * time by its id (the last CANDLE_TRADE_IDS of its symbol), and a
 * correction or cancel adjusts the bars of that time, with the trade's
 * price and size as the message gives them ("op", "os"; "p", "s"), not at
 * its own "t". An id not remembered, or already cancelled, is counted
 * (adjust_unknown) and changes nothing. */
void candle_trade_ref_id(candle_engine *e, uint32_t id, uint64_t tid, int64_t t_ns, double price, int64_t size,
                         int64_t now_ns);
void candle_correct_ref_id(candle_engine *e, uint32_t id, uint64_t tid, double op, int64_t os, double cp, int64_t cs,
                           int64_t now_ns);
void candle_cancel_ref_id(candle_engine *e, uint32_t id, uint64_t tid, double price, int64_t size, int64_t now_ns);

/* The same by name: the symbol is interned in the engine's table (refused,
 * and counted, past its limit). */
void candle_trade(candle_engine *e, const char *sym, size_t n, int64_t t_ns, double price, int64_t size, int64_t now_ns);
void candle_quote(candle_engine *e, const char *sym, size_t n, int64_t t_ns, double bid, double ask, int64_t now_ns);
/* Alpaca "T":"c": the trade at t was op x os and is cp x cs. */
void candle_correct(candle_engine *e, const char *sym, size_t n, int64_t t_ns, double op, int64_t os, double cp,
                    int64_t cs, int64_t now_ns);
/* Alpaca "T":"x": the trade at t, p x s, is withdrawn. */
void candle_cancel(candle_engine *e, const char *sym, size_t n, int64_t t_ns, double price, int64_t size,
                   int64_t now_ns);
/* The timer: closes the bars of quiet symbols whose horizon passed end +
 * grace, hands dirty in-progress bars to on_bar (rate limited). */
void candle_tick(candle_engine *e, int64_t now_ns);

/* Copies up to `limit` newest bars of sym/tf into out, oldest first;
 * returns how many, or -1 when the symbol has no bars at all. */
int candle_history(const candle_engine *e, const char *sym, size_t n, int tf, uint32_t limit, candle_bar *out);
uint32_t candle_history_max(const candle_engine *e);
void candle_get_stats(const candle_engine *e, candle_stats *out);
const char *candle_bad_name(candle_bad_reason r);

#endif
