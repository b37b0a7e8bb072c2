/* Simulated feed. Each symbol's mid price follows a geometric random walk in
 * cents; bid and ask straddle it by a spread of a few cents that widens with
 * the price. All randomness comes from one xorshift64* generator seeded from
 * the seed, so a seed replays the same market. */
#include "market/feed_sim.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "market/stream_msg.h"
#include "base/rng.h"

/* Per-quote volatility of the mid: 5 basis points, a lively but believable
 * tape at tens of quotes per second. */
#define SIM_SIGMA 0.0005
/* Starting prices are drawn in this range (dollars). */
#define SIM_PRICE_MIN 10.0
#define SIM_PRICE_MAX 500.0
/* A price never walks below one dollar. */
#define SIM_PRICE_FLOOR 1.0

typedef struct {
  char name[TD_SYMBOL_MAX + 1];
  double mid;                /* dollars */
  char tape;                 /* A, B or C, fixed per symbol like a listing */
} sim_symbol;

typedef enum { SIM_IDLE, SIM_RUNNING, SIM_CLOSING } sim_state;

struct sim_feed {
  uv_timer_t timer;
  uv_loop_t *loop;
  sim_state state;
  double rate;
  double carry;
  uint64_t last_ms;
  uint64_t rng;
  sim_symbol *syms;
  size_t nsyms, next_sym;
  char *buf;                 /* one batch of JSON text */
  sim_deliver_cb deliver;
  void *ud;
  sim_close_cb close_cb;
  double trades_per_quote;   /* chance that a quote is followed by a trade */
  uint64_t trade_id;
  sim_stats st;
};

static const char exchanges[] = "ABCHJKMNPQUVXYZ";

/* Close enough to a standard normal for a price walk (Irwin-Hall, n = 4). */
static double rng_normal(uint64_t *s) {
  double u = rng_unit(s) + rng_unit(s) + rng_unit(s) + rng_unit(s);
  return (u - 2.0) * 1.7320508075688772;
}

uint64_t sim_quotes_due(double rate, uint64_t elapsed_ms, double *carry) {
  if (!(rate > 0)) {
    *carry = 0;
    return 0;
  }
  double exact = rate * (double)elapsed_ms / 1000.0 + *carry;
  double whole = floor(exact);
  *carry = exact - whole;
  return (uint64_t)whole;
}

static int parse_symbols(sim_feed *s, const char *csv, const char **err) {
  size_t cap = 1;
  for (const char *p = csv; *p; p++) cap += *p == ',';
  if (cap > TD_MAX_SYMBOLS) {
    *err = "too many symbols";
    return -EINVAL;
  }
  s->syms = calloc(cap, sizeof(*s->syms));
  if (!s->syms) {
    *err = "out of memory";
    return -ENOMEM;
  }
  for (const char *p = csv;;) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *a = p, *b = end;
    while (a < b && *a == ' ') a++;
    while (b > a && b[-1] == ' ') b--;
    if (a < b) {
      if (!smsg_symbol_valid(a, (size_t)(b - a))) {
        *err = "invalid symbol";
        return -EINVAL;
      }
      memcpy(s->syms[s->nsyms++].name, a, (size_t)(b - a));
    }
    if (!*end) break;
    p = end + 1;
  }
  if (!s->nsyms) {
    *err = "no symbols";
    return -EINVAL;
  }
  return 0;
}

static void seed_prices(sim_feed *s, uint64_t seed) {
  s->rng = rng_seed(seed); /* any seed, 0 included */
  for (size_t i = 0; i < s->nsyms; i++) {
    double p = SIM_PRICE_MIN + rng_unit(&s->rng) * (SIM_PRICE_MAX - SIM_PRICE_MIN);
    s->syms[i].mid = round(p * 100) / 100;
    s->syms[i].tape = (char)('A' + rng_next(&s->rng) % 3);
  }
}

sim_feed *sim_new(uv_loop_t *loop, const char *symbols_csv, double rate, uint64_t seed,
                  sim_deliver_cb deliver, void *ud, const char **err) {
  if (!(rate >= 0) || isinf(rate)) {
    *err = "invalid rate";
    return NULL;
  }
  sim_feed *s = calloc(1, sizeof(*s));
  if (!s) {
    *err = "out of memory";
    return NULL;
  }
  /* quotes, each maybe followed by a trade, commas, [ ] */
  s->buf = malloc(2 * SIM_BATCH_MAX * (SIM_QUOTE_MAX_BYTES + 1) + 2);
  if (!s->buf || parse_symbols(s, symbols_csv ? symbols_csv : "", err) < 0 ||
      uv_timer_init(loop, &s->timer) < 0) {
    if (!s->buf) *err = "out of memory";
    free(s->buf);
    free(s->syms);
    free(s);
    return NULL;
  }
  s->loop = loop;
  s->rate = rate;
  s->deliver = deliver;
  s->ud = ud;
  s->timer.data = s;
  seed_prices(s, seed);
  return s;
}

/* "2026-11-21T20:00:00.123456789Z" */
static int format_time(char *out, size_t cap, int64_t ns) {
  time_t sec = (time_t)(ns / 1000000000);
  struct tm tm;
  gmtime_r(&sec, &tm);
  return snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  (long)(ns % 1000000000));
}

/* A trade of y between its bid and ask (cents), at the quote's time: sizes
 * mostly round lots, sometimes odd lots, as on a real tape. */
static size_t trade_json(sim_feed *s, char *out, const sim_symbol *y, int64_t bid, int64_t ask, const char *t) {
  int64_t price = bid + (int64_t)(rng_next(&s->rng) % (uint64_t)(ask - bid + 1));
  unsigned size = rng_next(&s->rng) % 4 ? 100 * (1 + (unsigned)(rng_next(&s->rng) % 5))
                                        : 1 + (unsigned)(rng_next(&s->rng) % 99);
  char x = exchanges[rng_next(&s->rng) % (sizeof(exchanges) - 1)];
  int n = snprintf(out, SIM_QUOTE_MAX_BYTES,
                   ",{\"T\":\"t\",\"S\":\"%s\",\"i\":%llu,\"x\":\"%c\",\"p\":%lld.%02lld,\"s\":%u,"
                   "\"c\":[\"@\"],\"z\":\"%c\",\"t\":\"%s\"}",
                   y->name, (unsigned long long)++s->trade_id, x, (long long)(price / 100),
                   (long long)(price % 100), size, y->tape, t);
  s->st.trades++;
  return n > 0 && n < SIM_QUOTE_MAX_BYTES ? (size_t)n : 0;
}

/* Appends one quote for the next symbol, round-robin, and maybe a trade. */
static size_t quote_json(sim_feed *s, char *out, int64_t ns) {
  sim_symbol *y = &s->syms[s->next_sym];
  s->next_sym = (s->next_sym + 1) % s->nsyms;
  y->mid *= exp(SIM_SIGMA * rng_normal(&s->rng));
  if (y->mid < SIM_PRICE_FLOOR) y->mid = SIM_PRICE_FLOOR;
  /* Spread: 1 to (2 + price/100) cents, so it is always positive. */
  int64_t spread = 1 + (int64_t)(rng_next(&s->rng) % (uint64_t)(2 + y->mid / 100));
  int64_t bid = llround(y->mid * 100 - (double)spread / 2);
  if (bid < 1) bid = 1;
  int64_t ask = bid + spread;
  unsigned bs = 100 * (1 + (unsigned)(rng_next(&s->rng) % 10));
  unsigned as = 100 * (1 + (unsigned)(rng_next(&s->rng) % 10));
  char bx = exchanges[rng_next(&s->rng) % (sizeof(exchanges) - 1)];
  char ax = exchanges[rng_next(&s->rng) % (sizeof(exchanges) - 1)];
  char t[96];   /* room for any int fields, so the format cannot truncate */
  format_time(t, sizeof(t), ns);
  int n = snprintf(out, SIM_QUOTE_MAX_BYTES,
                   "{\"T\":\"q\",\"S\":\"%s\",\"bx\":\"%c\",\"bp\":%lld.%02lld,\"bs\":%u,"
                   "\"ax\":\"%c\",\"ap\":%lld.%02lld,\"as\":%u,\"c\":[\"R\"],\"z\":\"%c\","
                   "\"t\":\"%s\"}",
                   y->name, bx, (long long)(bid / 100), (long long)(bid % 100), bs, ax,
                   (long long)(ask / 100), (long long)(ask % 100), as, y->tape, t);
  if (n <= 0 || n >= SIM_QUOTE_MAX_BYTES) return 0;
  /* drawn only when trades are on, so a seed without trades replays as before */
  if (s->trades_per_quote > 0 && rng_unit(&s->rng) < s->trades_per_quote)
    n += (int)trade_json(s, out + n, y, bid, ask, t);
  return (size_t)n;
}

/* Produces n quotes in buffers of at most SIM_BATCH_MAX. Quote i of the call
 * is stamped now + i ns, so timestamps never repeat within a call. */
static void sim_generate(sim_feed *s, uint64_t n, int64_t now_ns) {
  for (uint64_t done = 0; done < n && s->state != SIM_CLOSING;) {
    size_t len = 0;
    s->buf[len++] = '[';
    for (int k = 0; k < SIM_BATCH_MAX && done < n; k++, done++) {
      if (k) s->buf[len++] = ',';
      len += quote_json(s, s->buf + len, now_ns + (int64_t)done);
    }
    s->buf[len++] = ']';
    s->st.batches++;
    s->st.bytes += len;
    s->deliver(s->ud, s->buf, len);
  }
}

static int64_t realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_tick(uv_timer_t *t) {
  sim_feed *s = t->data;
  uint64_t now = uv_now(s->loop), elapsed = now - s->last_ms;
  s->last_ms = now;
  if (elapsed > SIM_MAX_CATCHUP_MS) {
    /* the loop stalled: what was due beyond the catch-up window is shed, and counted */
    s->st.shed += (uint64_t)(s->rate * (double)(elapsed - SIM_MAX_CATCHUP_MS) / 1000.0);
    elapsed = SIM_MAX_CATCHUP_MS;
  }
  s->st.ticks++;
  uint64_t n = sim_quotes_due(s->rate, elapsed, &s->carry);
  if (n > SIM_MAX_PER_TICK) {
    s->st.shed += n - SIM_MAX_PER_TICK;
    n = SIM_MAX_PER_TICK;
  }
  s->st.quotes += n;
  sim_generate(s, n, realtime_ns());
}

int sim_start(sim_feed *s) {
  if (s->state == SIM_CLOSING) return -EINVAL;
  if (s->state == SIM_RUNNING) return 0;
  s->last_ms = uv_now(s->loop);
  s->carry = 0;
  s->state = SIM_RUNNING;
  return uv_timer_start(&s->timer, on_tick, SIM_TICK_MS, SIM_TICK_MS);
}

void sim_stop(sim_feed *s) {
  if (s->state != SIM_RUNNING) return;
  uv_timer_stop(&s->timer);
  s->state = SIM_IDLE;
}

void sim_set_rate(sim_feed *s, double rate) {
  if (rate >= 0 && !isinf(rate)) s->rate = rate;
}

double sim_rate(const sim_feed *s) { return s->rate; }

void sim_set_trades(sim_feed *s, double per_quote) {
  if (per_quote >= 0 && per_quote <= 1) s->trades_per_quote = per_quote;
}

static void on_close(uv_handle_t *h) {
  sim_feed *s = h->data;
  sim_close_cb cb = s->close_cb;
  void *ud = s->ud;
  free(s->buf);
  free(s->syms);
  free(s);
  if (cb) cb(ud);
}

void sim_close(sim_feed *s, sim_close_cb cb) {
  if (s->state == SIM_CLOSING) return;
  sim_stop(s);
  s->state = SIM_CLOSING;
  s->close_cb = cb;
  uv_close((uv_handle_t *)&s->timer, on_close);
}

void sim_get_stats(const sim_feed *s, sim_stats *out) { *out = s->st; }
