/* OHLCV bars from trades and quotes (see candle.h for the time rules). */
#include "market/candle.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/inline.h"
#include "base/log.h"
#include "base/td_limits.h"
#include "market/symtab.h"

#define NS_PER_S 1000000000LL
/* A series' ring starts this small and doubles up to the history size: a
 * 1 h series of a fresh symbol holds one bar, not 300 slots. */
#define CANDLE_SERIES_INITIAL 4

/* One timeframe of one symbol: its bars but the newest, in a ring, oldest
 * at `head` (at most history - 1: the newest is the symbol's live[tf]). */
typedef struct {
  candle_bar *bars;
  uint32_t cap, head, n;
  int64_t next_close_ns;    /* end + grace of the oldest open bar (INT64_MAX: none) */
  int64_t emitted_ns;       /* wall time of the last in-progress on_bar */
} candle_series;

/* What a trade touches sits together, in the symbol's first two cache
 * lines (CANDLE_SYM_ALIGN): the times, then the trades not yet folded into
 * the bars. Over 1,000 symbols those lines are out of cache when the
 * symbol's next trade comes (the other symbols' trades came between): the
 * pipeline asks for them early (candle_prefetch), and fewer lines are
 * fewer misses. The newest bar of every timeframe follows side by side
 * (six bars: 480 contiguous bytes, not six rings apart on the heap).
 * The rings of older bars are separate; a trade reaches them only when it
 * starts a bar or arrives out of order.
 *
 * Most trades of a busy symbol fall in the second of the one before, whose
 * bar is the live, open one in every timeframe (a second lies in exactly
 * one bar of each). Such a trade goes into `pending` alone, one update
 * instead of one per timeframe; pending is folded into the live bars (a
 * merge that gives what the trades one by one would: see bar_merge) before
 * anything else reads or changes them: another second's trade, a close, a
 * correction, the timer's in-progress bars; candle_history merges it into
 * its copy. */
typedef struct {
  /* first line: what every trade reads or writes */
  int64_t mark_ns;          /* latest exchange time seen */
  int64_t mark_arrival_ns;  /* wall time when mark_ns arrived */
  int64_t horizon_ns;       /* bars with end + grace <= horizon are closed (every timeframe) */
  int64_t next_close_ns;    /* the least of the series' next_close_ns */
  int64_t fast_ns;          /* start of the second whose trades may go to pending (FAST_NONE: none) */
  uint32_t id;              /* in the engine's symtab */
  uint8_t live_mask;        /* bit tf: live[tf] holds the series' newest bar */
  bool traded;              /* a trade was seen: quotes make no more bars */
  /* from the 48th byte to the end of the second line */
  candle_bar pending;       /* trades of fast_ns's second not yet in the bars (count 0: none) */
  candle_bar live[CANDLE_MAX_TF];
  int64_t logged_ns;        /* last bad-input log line (0: none yet) */
  uint64_t log_suppressed;  /* bad inputs not logged since */
  candle_series tf[];
} candle_sym;
#define CANDLE_SYM_ALIGN 64
_Static_assert(offsetof(candle_sym, pending) + sizeof(candle_bar) <= 2 * CANDLE_SYM_ALIGN,
               "a trade's fields fill the symbol's first two cache lines");

/* What the engine knows of a symbol id: its state, and its last
 * CANDLE_TRADE_IDS trades for the corrections and cancels that name one by
 * id, side by side: candle_prefetch reads one line to find both the
 * symbol's lines and the slot its next trade id goes to, without waiting
 * for the symbol's own lines. */
typedef struct {
  candle_sym *sym;          /* NULL until the id's first message */
  struct trade_ref *refs;   /* a ring; NULL until the symbol's first trade */
  uint32_t refs_next;       /* the ring's next slot */
} candle_slot;

/* A trade by id: the time that places it in its bars. Its price and size
 * are not kept: Alpaca's corrections carry the trade's ("op", "os") and
 * cancels theirs ("p", "s"). Sixteen bytes, four to a cache line: every
 * trade writes one, to a line the other symbols' trades have pushed out of
 * cache since, and those writes were the largest part of the candles' CPU
 * per trade over 1,000 symbols (README, Candles); at 32 bytes (price and
 * size kept) every other trade met a new line. */
typedef struct trade_ref {
  uint64_t id;
  int64_t t_ns;             /* REF_NONE: an empty or withdrawn slot */
} trade_ref;
#define REF_NONE INT64_MIN
_Static_assert(CANDLE_MAX_TF <= 8, "live_mask has a bit per timeframe");
#define FAST_NONE INT64_MIN

struct candle_engine {
  int ntf;
  int64_t tf_s[CANDLE_MAX_TF];
  char tf_name[CANDLE_MAX_TF][CANDLE_TF_NAME_MAX];
  int64_t grace_ns;
  uint32_t history, max_symbols;
  candle_bar_cb on_bar;
  void *ud;
  symtab *syms;             /* the process's (borrowed) or the engine's own */
  bool own_syms;
  candle_slot *by_id;       /* max_symbols of them */
  uint32_t *ids;            /* ids with a candle_sym, in arrival order (the timer's walk) */
  int64_t *live_due_ns;     /* by place in ids: no in-progress bar of that symbol is handed
                             * over before (0: look at every tick) */
  uint32_t nsyms;
  candle_stats stats;
};

/* ---- timeframes ------------------------------------------------------------ */

int64_t candle_tf_parse(const char *s, size_t n) {
  if (n < 2 || n > CANDLE_TF_NAME_MAX - 1) return -1;
  int64_t v = 0;
  for (size_t i = 0; i + 1 < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  int64_t unit = s[n - 1] == 's' ? 1 : s[n - 1] == 'm' ? 60 : s[n - 1] == 'h' ? 3600 : s[n - 1] == 'd' ? 86400 : 0;
  v *= unit;
  return v > 0 && v <= CANDLE_TF_MAX_S && s[0] != '0' ? v : -1;
}

static int parse_timeframes(candle_engine *e, const char *list, char *err, size_t err_len) {
  const char *p = list;
  while (*p) {
    const char *c = strchr(p, ',');
    size_t n = c ? (size_t)(c - p) : strlen(p);
    int64_t s = candle_tf_parse(p, n);
    if (s < 0 || e->ntf == CANDLE_MAX_TF) {
      snprintf(err, err_len, s < 0 ? "bad timeframe \"%.*s\" (1s..1d: a number and s, m, h or d)"
                                   : "more than %d timeframes", s < 0 ? (int)n : CANDLE_MAX_TF, p);
      return -EINVAL;
    }
    for (int i = 0; i < e->ntf; i++)
      if (e->tf_s[i] == s) {
        snprintf(err, err_len, "timeframe \"%.*s\" given twice", (int)n, p);
        return -EINVAL;
      }
    e->tf_s[e->ntf] = s;
    memcpy(e->tf_name[e->ntf], p, n);
    e->tf_name[e->ntf][n] = '\0';
    e->ntf++;
    p = c ? c + 1 : p + n;
  }
  if (e->ntf == 0) {
    snprintf(err, err_len, "no timeframe");
    return -EINVAL;
  }
  return 0;
}

int candle_tf_count(const candle_engine *e) { return e->ntf; }
int64_t candle_tf_seconds(const candle_engine *e, int tf) { return e->tf_s[tf]; }
const char *candle_tf_name(const candle_engine *e, int tf) { return e->tf_name[tf]; }
uint32_t candle_history_max(const candle_engine *e) { return e->history; }

int candle_tf_find(const candle_engine *e, const char *s, size_t n) {
  int64_t sec = candle_tf_parse(s, n);
  for (int i = 0; sec > 0 && i < e->ntf; i++)
    if (e->tf_s[i] == sec) return i;
  return -1;
}

/* ---- the engine and its symbols ---------------------------------------------- */

candle_engine *candle_new(const candle_opts *o, char *err, size_t err_len) {
  candle_engine *e = calloc(1, sizeof(*e));
  if (!e) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  if (parse_timeframes(e, o->timeframes ? o->timeframes : CANDLE_DEFAULT_TIMEFRAMES, err, err_len) != 0) {
    free(e);
    return NULL;
  }
  e->grace_ns = (o->grace_ms < 0 ? CANDLE_DEFAULT_GRACE_MS : o->grace_ms) * 1000000LL;
  e->history = o->history ? o->history : CANDLE_DEFAULT_HISTORY;
  e->max_symbols = o->max_symbols ? o->max_symbols : TD_MAX_SYMBOLS;
  e->on_bar = o->on_bar;
  e->ud = o->ud;
  e->own_syms = o->syms == NULL;
  e->syms = o->syms ? o->syms : symtab_new(e->max_symbols);
  if (e->syms && e->max_symbols > symtab_max(e->syms)) e->max_symbols = symtab_max(e->syms);
  e->by_id = calloc(e->max_symbols, sizeof(*e->by_id));
  e->ids = calloc(e->max_symbols, sizeof(*e->ids));
  e->live_due_ns = calloc(e->max_symbols, sizeof(*e->live_due_ns));
  if (!e->syms || !e->by_id || !e->ids || !e->live_due_ns) {
    candle_free(e);
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  e->stats.bytes = sizeof(*e) + e->max_symbols * (sizeof(*e->by_id) + sizeof(*e->ids) + sizeof(*e->live_due_ns));
  return e;
}

void candle_free(candle_engine *e) {
  if (!e) return;
  for (uint32_t i = 0; i < e->nsyms; i++) {
    candle_slot *slot = &e->by_id[e->ids[i]];
    for (int t = 0; t < e->ntf; t++) free(slot->sym->tf[t].bars);
    free(slot->refs);
    free(slot->sym);
  }
  free(e->by_id);
  free(e->ids);
  free(e->live_due_ns);
  if (e->own_syms) symtab_free(e->syms);
  free(e);
}

/* The state of symbol id, made on its first message; NULL past max_symbols
 * (counted) or on OOM. */
static TD_COLD candle_sym *sym_new(candle_engine *e, uint32_t id) {
  if (id >= e->max_symbols) {
    e->stats.refused++;
    return NULL;
  }
  size_t size = sizeof(candle_sym) + (size_t)e->ntf * sizeof(candle_series);
  size = (size + CANDLE_SYM_ALIGN - 1) / CANDLE_SYM_ALIGN * CANDLE_SYM_ALIGN;   /* aligned_alloc's rule */
  candle_sym *s = aligned_alloc(CANDLE_SYM_ALIGN, size);
  if (!s) return NULL;
  memset(s, 0, size);
  s->id = id;
  s->fast_ns = FAST_NONE;
  e->by_id[id].sym = s;
  e->ids[e->nsyms++] = id;
  e->stats.symbols++;
  e->stats.bytes += size;
  return s;
}

/* The symbol of id, made at its first message; NULL when refused. */
static TD_HOT_INLINE candle_sym *sym_get(candle_engine *e, uint32_t id) {
  if (id < e->max_symbols && e->by_id[id].sym) return e->by_id[id].sym;
  return sym_new(e, id);
}

/* The id of a symbol named by its bytes (the by-name entry points: tests,
 * tools): interned in the engine's table. False when refused (counted). */
static bool name_id(candle_engine *e, const char *s, size_t n, uint32_t *id) {
  int rc = symtab_intern(e->syms, s, n, id);
  if (rc == -ENOSPC) e->stats.refused++;
  return rc == 0;
}

static const char *sym_name(const candle_engine *e, const candle_sym *sym) { return symtab_name(e->syms, sym->id); }
static size_t sym_len(const candle_engine *e, const candle_sym *sym) { return symtab_len(e->syms, sym->id); }

/* ---- series ---------------------------------------------------------------- */

/* Ring bar i from the oldest; a subtraction, not a modulo. */
static candle_bar *ring_at(const candle_series *s, uint32_t i) {
  uint32_t k = s->head + i;
  return &s->bars[k >= s->cap ? k - s->cap : k];
}

static bool has_live(const candle_sym *sym, int tf) { return sym->live_mask >> tf & 1; }

/* Bars of a series: the ring and the live one. */
static uint32_t series_n(const candle_sym *sym, int tf) { return sym->tf[tf].n + has_live(sym, tf); }

/* Bar i of a series from the oldest. */
static candle_bar *bar_at(candle_sym *sym, int tf, uint32_t i) {
  const candle_series *s = &sym->tf[tf];
  return i < s->n ? ring_at(s, i) : &sym->live[tf];
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

/* The start of the bar of timeframe tf_s holding second `sec`. */
static int64_t bar_start(int64_t sec, int64_t tf_s) { return floor_div(sec, tf_s) * tf_s; }

/* Room for one more ring bar: grows up to history - 1. False when full. */
static bool ring_room(candle_engine *e, candle_series *s) {
  if (s->n < s->cap) return true;
  if (s->cap >= e->history - 1) return false;
  uint32_t cap = s->cap ? s->cap * 2 : CANDLE_SERIES_INITIAL;
  if (cap > e->history - 1) cap = e->history - 1;
  candle_bar *b = malloc(cap * sizeof(*b));
  if (!b) return false;
  for (uint32_t i = 0; i < s->n; i++) b[i] = *ring_at(s, i);
  free(s->bars);
  e->stats.bytes += (cap - s->cap) * sizeof(*b);
  s->bars = b;
  s->cap = cap;
  s->head = 0;
  return true;
}

static void ring_forget_oldest(candle_series *s) {
  s->head = (s->head + 1) % s->cap;
  s->n--;
}

static bool bar_closed_by(const candle_engine *e, int64_t start, int64_t tf_s, int64_t horizon_ns) {
  return (start + tf_s) * NS_PER_S + e->grace_ns <= horizon_ns;
}

static bool open_bar(const candle_bar *b) { return !(b->flags & CANDLE_F_CLOSED); }

/* A new, empty bar at `start`, whose end + grace may be the series' next
 * close. */
static candle_bar *bar_init(candle_engine *e, candle_sym *sym, int tf, candle_bar *b, int64_t start) {
  memset(b, 0, sizeof(*b));
  b->start = start;
  candle_series *s = &sym->tf[tf];
  int64_t close_ns = (start + e->tf_s[tf]) * NS_PER_S + e->grace_ns;
  if (series_n(sym, tf) == 1 || close_ns < s->next_close_ns) s->next_close_ns = close_ns;
  if (s->next_close_ns < sym->next_close_ns) sym->next_close_ns = s->next_close_ns;
  return b;
}

/* A bar newer than every bar of the series becomes the live one; the live
 * one moves to the ring (forgetting the ring's oldest when it is full). */
static candle_bar *series_newest(candle_engine *e, candle_sym *sym, int tf, int64_t start) {
  candle_series *s = &sym->tf[tf];
  if (has_live(sym, tf)) {
    if (ring_room(e, s)) {
      s->n++;
      *ring_at(s, s->n - 1) = sym->live[tf];
    } else if (s->n > 0) {
      ring_forget_oldest(s);
      s->n++;
      *ring_at(s, s->n - 1) = sym->live[tf];
    }   /* else a history of one bar: the live one is forgotten */
  }
  sym->live_mask |= (uint8_t)(1u << tf);
  return bar_init(e, sym, tf, &sym->live[tf], start);
}

/* A bar older than the live one goes into the ring, in order. */
static candle_bar *series_older(candle_engine *e, candle_sym *sym, int tf, int64_t start) {
  candle_series *s = &sym->tf[tf];
  uint32_t i = s->n;
  while (i > 0 && ring_at(s, i - 1)->start > start) i--;
  if (i > 0 && ring_at(s, i - 1)->start == start) {
    candle_bar *b = ring_at(s, i - 1);
    return open_bar(b) ? b : NULL;
  }
  if (bar_closed_by(e, start, e->tf_s[tf], sym->horizon_ns)) return NULL;
  if (!ring_room(e, s)) {
    if (i == 0) return NULL;    /* older than every bar kept */
    ring_forget_oldest(s);
    i--;
  }
  /* shift the newer ring bars (only open ones, a few) one slot up */
  for (uint32_t j = s->n; j > i; j--) *ring_at(s, j) = *ring_at(s, j - 1);
  s->n++;
  return bar_init(e, sym, tf, ring_at(s, i), start);
}

/* The open bar that starts at `start`, inserted empty if absent; NULL when
 * that bar is closed or older than the history. */
static candle_bar *series_bar(candle_engine *e, candle_sym *sym, int tf, int64_t start) {
  candle_bar *live = &sym->live[tf];
  if (has_live(sym, tf)) {
    if (live->start == start) return open_bar(live) ? live : NULL;   /* the common case */
    if (start < live->start) return series_older(e, sym, tf, start);
  }
  if (bar_closed_by(e, start, e->tf_s[tf], sym->horizon_ns)) return NULL;
  return series_newest(e, sym, tf, start);
}

/* series_bar for the bar holding second `sec`: the live bar when sec is
 * in it (nearly every trade), found with two comparisons instead of a
 * division per timeframe. */
static inline candle_bar *series_bar_at(candle_engine *e, candle_sym *sym, int tf, int64_t sec) {
  candle_bar *live = &sym->live[tf];
  if ((uint64_t)(sec - live->start) < (uint64_t)e->tf_s[tf] && has_live(sym, tf)) return open_bar(live) ? live : NULL;
  return series_bar(e, sym, tf, bar_start(sec, e->tf_s[tf]));
}

static void bar_first(candle_bar *b, double price, int64_t t_ns, uint8_t flags) {
  b->open = b->high = b->low = b->close = price;
  b->first_ns = b->last_ns = t_ns;
  b->volume = 0;
  b->pv = 0;
  b->count = 0;
  b->flags = flags;
}

/* One price at exchange time t into an open bar: the open is the earliest
 * (the first arrival among equal times), the close the latest (the last). */
static void bar_add(candle_bar *b, double price, int64_t t_ns) {
  if (price > b->high) b->high = price;
  if (price < b->low) b->low = price;
  if (t_ns < b->first_ns) {
    b->first_ns = t_ns;
    b->open = price;
  }
  if (t_ns >= b->last_ns) {
    b->last_ns = t_ns;
    b->close = price;
  }
}

/* One trade into an open bar: the first of a bar, or of a bar that quotes
 * had begun (trades win), sets it; later ones add. */
static TD_HOT_INLINE void bar_trade(candle_bar *b, double price, int64_t t_ns, int64_t size) {
  if (b->count == 0 || (b->flags & CANDLE_F_MID)) bar_first(b, price, t_ns, 0);
  else bar_add(b, price, t_ns);
  b->volume += (uint64_t)size;
  b->pv += price * (double)size;
  b->count++;
  b->flags |= CANDLE_F_DIRTY;
}

/* The trades of p (pending: all later arrivals than b's) into b, as
 * bar_trade one by one would have put them: max and min; the open is p's
 * when strictly earlier (among equal times b's arrived first), the close
 * p's when not earlier (p's arrived last). VWAP's sum is added in another
 * order: equal to the last bits of a double. */
static void bar_merge(candle_bar *b, const candle_bar *p) {
  if (b->count == 0 || (b->flags & CANDLE_F_MID)) {
    bar_first(b, p->open, p->first_ns, 0);
    b->high = p->high;
    b->low = p->low;
    b->close = p->close;
    b->last_ns = p->last_ns;
  } else {
    if (p->high > b->high) b->high = p->high;
    if (p->low < b->low) b->low = p->low;
    if (p->first_ns < b->first_ns) {
      b->first_ns = p->first_ns;
      b->open = p->open;
    }
    if (p->last_ns >= b->last_ns) {
      b->last_ns = p->last_ns;
      b->close = p->close;
    }
  }
  b->volume += p->volume;
  b->pv += p->pv;
  b->count += p->count;
  b->flags |= CANDLE_F_DIRTY;
}

/* Pending trades into the live bars of their second, which every
 * timeframe had open when fast_ns was set, and nothing has changed since
 * (whatever could, folds first). */
static void sym_fold(candle_engine *e, candle_sym *sym) {
  if (sym->pending.count == 0) return;
  for (int tf = 0; tf < e->ntf; tf++) bar_merge(&sym->live[tf], &sym->pending);
  sym->pending.count = 0;
}

static void emit(candle_engine *e, const candle_sym *sym, int tf, candle_bar *b) {
  b->flags &= (uint8_t)~CANDLE_F_DIRTY;
  e->stats.emitted++;
  if (e->on_bar) e->on_bar(e->ud, sym_name(e, sym), sym_len(e, sym), tf, b);
}

/* Closes, oldest first, the bars of a series that the horizon passed. */
static void series_close(candle_engine *e, candle_sym *sym, int tf) {
  candle_series *s = &sym->tf[tf];
  if (sym->horizon_ns < s->next_close_ns) return;
  uint32_t n = series_n(sym, tf), first = n;
  while (first > 0 && open_bar(bar_at(sym, tf, first - 1))) first--;
  s->next_close_ns = INT64_MAX;
  for (uint32_t i = first; i < n; i++) {
    candle_bar *b = bar_at(sym, tf, i);
    if (!bar_closed_by(e, b->start, e->tf_s[tf], sym->horizon_ns)) {
      s->next_close_ns = (b->start + e->tf_s[tf]) * NS_PER_S + e->grace_ns;
      break;
    }
    b->flags |= CANDLE_F_CLOSED;
    e->stats.closed++;
    emit(e, sym, tf, b);
  }
}

/* Moves the symbol's horizon on and closes the bars it passed. */
static void sym_advance(candle_engine *e, candle_sym *sym, int64_t horizon_ns) {
  if (horizon_ns <= sym->horizon_ns) return;
  sym->horizon_ns = horizon_ns;
  /* the common case, every trade: no open bar's time is up */
  if (horizon_ns < sym->next_close_ns) return;
  /* bars close: they take their pending trades with them, and the next
   * trade checks its bars again */
  sym_fold(e, sym);
  sym->fast_ns = FAST_NONE;
  sym->next_close_ns = INT64_MAX;
  for (int tf = 0; tf < e->ntf; tf++) {
    series_close(e, sym, tf);
    if (sym->tf[tf].next_close_ns < sym->next_close_ns) sym->next_close_ns = sym->tf[tf].next_close_ns;
  }
}

/* A message with exchange time t arrived at wall time now. */
static void sym_mark(candle_engine *e, candle_sym *sym, int64_t t_ns, int64_t now_ns) {
  if (t_ns <= sym->mark_ns) return;
  sym->mark_ns = t_ns;
  sym->mark_arrival_ns = now_ns;
  sym_advance(e, sym, t_ns);
}

/* ---- bad input ---------------------------------------------------------------- */

const char *candle_bad_name(candle_bad_reason r) {
  static const char *const names[CANDLE_BAD_COUNT] = {"size", "price", "future"};
  return r < CANDLE_BAD_COUNT ? names[r] : "?";
}

/* Counted always; logged at most once per symbol per CANDLE_LOG_INTERVAL_NS. */
static TD_COLD void bad_input(candle_engine *e, candle_sym *sym, candle_bad_reason r, int64_t t_ns, double price,
                              int64_t size, int64_t now_ns) {
  e->stats.bad[r]++;
  if (sym->logged_ns && now_ns - sym->logged_ns < CANDLE_LOG_INTERVAL_NS) {
    sym->log_suppressed++;
    return;
  }
  td_logline *l = log_begin(TD_LOG_WARN, "candle_bad_trade");
  if (l) {
    log_strn(l, "symbol", sym_name(e, sym), sym_len(e, sym));
    log_str(l, "reason", candle_bad_name(r));
    log_double(l, "price", isfinite(price) ? price : -1);
    log_int(l, "size", size);
    log_int(l, "t_ns", t_ns);
    log_int(l, "suppressed", (int64_t)sym->log_suppressed);
    log_end(l);
  }
  sym->logged_ns = now_ns;
  sym->log_suppressed = 0;
}

/* The symbol of a message whose price, size and time pass; NULL otherwise
 * (counted). Inline: every trade passes here. */
static TD_HOT_INLINE candle_sym *checked_sym(candle_engine *e, uint32_t id, int64_t t_ns, double price, int64_t size,
                                             int64_t now_ns) {
  candle_sym *sym = sym_get(e, id);
  if (!sym) return NULL;
  candle_bad_reason r = CANDLE_BAD_COUNT;
  if (size <= 0) r = CANDLE_BAD_SIZE;
  else if (!isfinite(price) || price <= 0) r = CANDLE_BAD_PRICE;
  else if (t_ns > now_ns + CANDLE_FUTURE_MAX_NS) r = CANDLE_BAD_FUTURE;
  if (r == CANDLE_BAD_COUNT) return sym;
  bad_input(e, sym, r, t_ns, price, size, now_ns);
  return NULL;
}

/* ---- trades, quotes, corrections, cancels ------------------------------------- */


/* A trade of another second than the one before (or after a close): into
 * every timeframe's bar of its second, which may start bars or be late. */
static bool trade_bars(candle_engine *e, candle_sym *sym, int64_t t_ns, double price, int64_t size) {
  int64_t sec = floor_div(t_ns, NS_PER_S);   /* once, not per timeframe */
  sym_fold(e, sym);
  bool applied = false, all_live = true;
  for (int tf = 0; tf < e->ntf; tf++) {
    candle_bar *b = series_bar_at(e, sym, tf, sec);
    all_live = all_live && b == &sym->live[tf];
    if (!b) continue;
    bar_trade(b, price, t_ns, size);
    applied = true;
  }
  /* the second's start, unless so early that it has none in int64 ns */
  sym->fast_ns = all_live && sec > INT64_MIN / NS_PER_S ? sec * NS_PER_S : FAST_NONE;
  if (applied) e->stats.trades++;
  else e->stats.late++;
  return applied;
}

/* A checked trade into its bars: whether one took it (else counted late).
 * Most go to the pending bar of the second before's: one unsigned
 * comparison, where dividing the time cost every trade ~14 instructions. */
static TD_HOT_INLINE bool trade_apply(candle_engine *e, candle_sym *sym, int64_t t_ns, double price, int64_t size,
                                      int64_t now_ns) {
  sym->traded = true;
  sym_mark(e, sym, t_ns, now_ns);
  if (sym->fast_ns != FAST_NONE && (uint64_t)t_ns - (uint64_t)sym->fast_ns < (uint64_t)NS_PER_S) {
    bar_trade(&sym->pending, price, t_ns, size);
    e->stats.trades++;
    return true;
  }
  return trade_bars(e, sym, t_ns, price, size);
}

void candle_trade_id(candle_engine *e, uint32_t id, int64_t t_ns, double price, int64_t size, int64_t now_ns) {
  candle_sym *sym = checked_sym(e, id, t_ns, price, size, now_ns);
  if (sym) trade_apply(e, sym, t_ns, price, size, now_ns);
}

void candle_quote_id(candle_engine *e, uint32_t id, int64_t t_ns, double bid, double ask, int64_t now_ns) {
  double mid = (bid + ask) / 2;
  /* one-sided or crossed quotes have no meaningful mid: they only mark time */
  bool usable = bid > 0 && ask >= bid && isfinite(mid);
  candle_sym *sym = usable ? checked_sym(e, id, t_ns, mid, 1, now_ns) : sym_get(e, id);
  if (!sym || (!usable && t_ns > now_ns + CANDLE_FUTURE_MAX_NS)) return;
  sym_mark(e, sym, t_ns, now_ns);
  if (sym->traded || !usable) return;
  bool applied = false;
  int64_t sec = floor_div(t_ns, NS_PER_S);   /* once, not per timeframe */
  for (int tf = 0; tf < e->ntf; tf++) {
    candle_bar *b = series_bar_at(e, sym, tf, sec);
    if (!b) continue;
    if (b->count == 0) bar_first(b, mid, t_ns, CANDLE_F_MID);
    else bar_add(b, mid, t_ns);
    b->count++;
    b->flags |= CANDLE_F_DIRTY;
    applied = true;
  }
  if (applied) e->stats.quotes++;
  else e->stats.late++;
}

/* Replaces (op x os) by (cp x cs) in every open bar holding t; cs == 0 is a
 * cancel. The bars keep no trades, so high and low only widen (a removed
 * extreme stays); the open or close is replaced when the touched trade is the
 * one that set it (same time, same price). Volume, count and VWAP are exact. */
static void adjust(candle_engine *e, uint32_t id, int64_t t_ns, double op, int64_t os, double cp, int64_t cs,
                   int64_t now_ns) {
  bool cancel = cs == 0;
  candle_sym *sym = checked_sym(e, id, t_ns, cancel ? op : cp, cancel ? os : cs, now_ns);
  if (!sym || os <= 0 || !isfinite(op)) {
    if (sym) e->stats.adjust_unmatched++;
    return;
  }
  sym_fold(e, sym);   /* the trade corrected may be pending */
  bool applied = false, unmatched = false;
  int64_t sec = floor_div(t_ns, NS_PER_S);   /* once, not per timeframe */
  for (int tf = 0; tf < e->ntf; tf++) {
    int64_t start = bar_start(sec, e->tf_s[tf]);
    uint32_t i = series_n(sym, tf);
    while (i > 0 && bar_at(sym, tf, i - 1)->start > start) i--;
    candle_bar *b = i > 0 ? bar_at(sym, tf, i - 1) : NULL;
    if (!b || b->start != start || (b->flags & (CANDLE_F_CLOSED | CANDLE_F_MID))) continue;
    if ((uint64_t)os > b->volume || b->count == 0) {
      unmatched = true;
      continue;
    }
    b->volume = b->volume - (uint64_t)os + (uint64_t)cs;
    b->pv += cp * (double)cs - op * (double)os;
    if (cancel) {
      b->count--;
    } else {
      if (cp > b->high) b->high = cp;
      if (cp < b->low) b->low = cp;
      if (t_ns == b->first_ns && b->open == op) b->open = cp;
      if (t_ns == b->last_ns && b->close == op) b->close = cp;
    }
    if (b->volume == 0) b->pv = 0;   /* no rounding residue on an empty bar */
    b->flags |= CANDLE_F_DIRTY | CANDLE_F_ADJUSTED;
    applied = true;
  }
  if (applied) e->stats.adjusted++;
  else if (unmatched) e->stats.adjust_unmatched++;
  else e->stats.adjust_late++;
}

void candle_correct_id(candle_engine *e, uint32_t id, int64_t t_ns, double op, int64_t os, double cp, int64_t cs,
                       int64_t now_ns) {
  if (cs <= 0) {  /* a correction to nothing is not a cancel: bad size */
    candle_sym *sym = sym_get(e, id);
    if (sym) bad_input(e, sym, CANDLE_BAD_SIZE, t_ns, cp, cs, now_ns);
    return;
  }
  adjust(e, id, t_ns, op, os, cp, cs, now_ns);
}

void candle_cancel_id(candle_engine *e, uint32_t id, int64_t t_ns, double price, int64_t size, int64_t now_ns) {
  adjust(e, id, t_ns, price, size, 0, 0, now_ns);
}

/* ---- by trade id ---------------------------------------------------------------- */

/* The ref of trade `tid` among the symbol's last CANDLE_TRADE_IDS, newest
 * first (corrections are rare: a walk; a trade costs one slot write). */
static trade_ref *ref_find(const candle_engine *e, uint32_t id, uint64_t tid) {
  const candle_slot *slot = &e->by_id[id];
  for (uint32_t k = 1; slot->refs && k <= CANDLE_TRADE_IDS; k++) {
    trade_ref *r = &slot->refs[(slot->refs_next + CANDLE_TRADE_IDS - k) % CANDLE_TRADE_IDS];
    if (r->id == tid && r->t_ns != REF_NONE) return r;
  }
  return NULL;
}

void candle_prefetch(const candle_engine *e, uint32_t id) {
  if (id >= e->max_symbols) return;
  const candle_slot *slot = &e->by_id[id];
  if (slot->sym) {
    __builtin_prefetch(slot->sym, 1);
    __builtin_prefetch((const char *)slot->sym + CANDLE_SYM_ALIGN, 1);
  }
  if (slot->refs) __builtin_prefetch(&slot->refs[slot->refs_next], 1);
}

void candle_trade_ref_id(candle_engine *e, uint32_t id, uint64_t tid, int64_t t_ns, double price, int64_t size,
                         int64_t now_ns) {
  candle_sym *sym = checked_sym(e, id, t_ns, price, size, now_ns);
  if (!sym || !trade_apply(e, sym, t_ns, price, size, now_ns)) return;   /* bad or late: no bar holds it */
  candle_slot *slot = &e->by_id[id];
  if (!slot->refs) {
    if (!(slot->refs = malloc(CANDLE_TRADE_IDS * sizeof(*slot->refs)))) return;
    for (uint32_t k = 0; k < CANDLE_TRADE_IDS; k++) slot->refs[k] = (trade_ref){0, REF_NONE};
    e->stats.bytes += CANDLE_TRADE_IDS * sizeof(*slot->refs);
  }
  slot->refs[slot->refs_next] = (trade_ref){tid, t_ns};
  slot->refs_next = (slot->refs_next + 1) % CANDLE_TRADE_IDS;
}

/* The trade `tid` of symbol id, or NULL (counted: unknown, not applied). */
static trade_ref *ref_of(candle_engine *e, uint32_t id, uint64_t tid) {
  candle_sym *sym = id < e->max_symbols ? e->by_id[id].sym : NULL;
  trade_ref *r = sym ? ref_find(e, id, tid) : NULL;
  if (!r) e->stats.adjust_unknown++;
  return r;
}

void candle_correct_ref_id(candle_engine *e, uint32_t id, uint64_t tid, double op, int64_t os, double cp, int64_t cs,
                           int64_t now_ns) {
  trade_ref *r = ref_of(e, id, tid);
  if (r) candle_correct_id(e, id, r->t_ns, op, os, cp, cs, now_ns);
}

void candle_cancel_ref_id(candle_engine *e, uint32_t id, uint64_t tid, double price, int64_t size, int64_t now_ns) {
  trade_ref *r = ref_of(e, id, tid);
  if (!r) return;
  candle_cancel_id(e, id, r->t_ns, price, size, now_ns);
  r->t_ns = REF_NONE;   /* withdrawn: a second cancel finds nothing */
}

/* ---- by name ------------------------------------------------------------------- */

void candle_trade(candle_engine *e, const char *s, size_t n, int64_t t_ns, double price, int64_t size, int64_t now_ns) {
  uint32_t id;
  if (name_id(e, s, n, &id)) candle_trade_id(e, id, t_ns, price, size, now_ns);
}

void candle_quote(candle_engine *e, const char *s, size_t n, int64_t t_ns, double bid, double ask, int64_t now_ns) {
  uint32_t id;
  if (name_id(e, s, n, &id)) candle_quote_id(e, id, t_ns, bid, ask, now_ns);
}

void candle_correct(candle_engine *e, const char *s, size_t n, int64_t t_ns, double op, int64_t os, double cp,
                    int64_t cs, int64_t now_ns) {
  uint32_t id;
  if (name_id(e, s, n, &id)) candle_correct_id(e, id, t_ns, op, os, cp, cs, now_ns);
}

void candle_cancel(candle_engine *e, const char *s, size_t n, int64_t t_ns, double price, int64_t size,
                   int64_t now_ns) {
  uint32_t id;
  if (name_id(e, s, n, &id)) candle_cancel_id(e, id, t_ns, price, size, now_ns);
}

/* ---- the timer ----------------------------------------------------------------- */

void candle_tick(candle_engine *e, int64_t now_ns) {
  for (uint32_t i = 0; i < e->nsyms; i++) {
    candle_sym *sym = e->by_id[e->ids[i]].sym;
    if (sym->mark_arrival_ns == 0) continue;
    /* the symbol's exchange time goes on at the wall clock's pace */
    int64_t elapsed = now_ns - sym->mark_arrival_ns;
    if (elapsed > 0) sym_advance(e, sym, sym->mark_ns + elapsed);
    /* A symbol that handed its bars over less than a second ago has none
     * due: its pending trades, bars and series (eight more cache lines of
     * each of a thousand symbols, at every tick) are not read. */
    if (now_ns < e->live_due_ns[i]) continue;
    e->live_due_ns[i] = 0;
    sym_fold(e, sym);   /* the in-progress bars with every trade */
    for (int tf = 0; tf < e->ntf; tf++) {
      candle_series *s = &sym->tf[tf];
      if (now_ns - s->emitted_ns < CANDLE_LIVE_INTERVAL_NS) continue;
      bool any = false;
      uint32_t n = series_n(sym, tf), j = n;
      while (j > 0 && open_bar(bar_at(sym, tf, j - 1))) j--;
      for (; j < n; j++) {   /* the open bars, oldest first */
        candle_bar *b = bar_at(sym, tf, j);
        if (b->flags & CANDLE_F_DIRTY) {
          emit(e, sym, tf, b);
          any = true;
        }
      }
      if (any) {
        s->emitted_ns = now_ns;
        e->live_due_ns[i] = now_ns + CANDLE_LIVE_INTERVAL_NS;
      }
    }
  }
}

/* ---- reading ------------------------------------------------------------------- */

int candle_history(const candle_engine *e, const char *s, size_t n, int tf, uint32_t limit, candle_bar *out) {
  uint32_t id = symtab_find(e->syms, s, n);
  candle_sym *sym = id < e->max_symbols ? e->by_id[id].sym : NULL;
  if (!sym || tf < 0 || tf >= e->ntf) return -1;
  uint32_t total = series_n(sym, tf), k = total < limit ? total : limit;
  for (uint32_t i = 0; i < k; i++) {
    const candle_bar *b = bar_at(sym, tf, total - k + i);
    out[i] = *b;
    /* the pending trades are in the live bar (sym_fold), as here */
    if (b == &sym->live[tf] && sym->pending.count) bar_merge(&out[i], &sym->pending);
  }
  return (int)k;
}

void candle_get_stats(const candle_engine *e, candle_stats *out) { *out = e->stats; }
