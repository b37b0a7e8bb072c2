/* The candle engine on the loop, fed by the pipeline, publishing to Redis
 * (see candle_pub.h). */
#include "market/candle_pub.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fmt_num.h"
#include "base/inline.h"
#include "market/candle_store.h"

struct candle_pub {
  uv_timer_t timer;
  candle_engine *engine;
  cstore *store;             /* publishes and keeps the bars; NULL: not published */
  candle_pub_stats stats;
  int closing;               /* handles (timer, store) not closed yet */
  uint64_t now_loop_ms;      /* uv_now when now_ns was read */
  int64_t now_ns;            /* the wall clock of this loop iteration's messages */
  void (*done)(void *);
  void *done_ud;
};

static int64_t realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The arrival time of a message: the wall clock read once per loop
 * iteration (uv_now moves only between iterations), not per message; a
 * POSTed batch or a feed's frame arrived at one moment anyway. It lags by
 * at most the iteration's work (and the millisecond uv_now counts in),
 * which only delays a quiet symbol's timer close by as much. */
static int64_t arrival_ns(candle_pub *c) {
  uint64_t loop_ms = uv_now(c->timer.loop);
  if (loop_ms != c->now_loop_ms || c->now_ns == 0) {
    c->now_ns = realtime_ns();
    c->now_loop_ms = loop_ms;
  }
  return c->now_ns;
}

/* ---- the JSON of a bar ------------------------------------------------------- */

/* Prices to a hundredth of a cent (Alpaca's finest tick), written with
 * integer arithmetic: printf's %g cost more than the rest of a bar, and
 * every series sends one a second. The same text on every path (Redis,
 * WebSocket, SSE, GET). Values past CANDLE_PRICE_FAST_MAX or negative take
 * %.10g. */
#define CANDLE_PRICE_SCALE 10000
#define CANDLE_PRICE_FAST_MAX 1e12
_Static_assert(CANDLE_PRICE_SCALE == 10000, "put_num writes four decimals");

/* Inline, so that a literal's length is a constant and its copy a few moves. */
static inline char *put_lit(char *o, const char *s) {
  size_t n = strlen(s);
  memcpy(o, s, n);
  return o + n;
}

static char *put_num(char *o, double v) {
  if (!(v >= 0 && v < CANDLE_PRICE_FAST_MAX)) return o + sprintf(o, "%.10g", v);
  /* llround(v * SCALE) without the libm call: x - trunc(x) is exact. Below
   * CANDLE_PRICE_FAST_MAX * SCALE the signed conversions are exact, and one
   * instruction each where the unsigned ones are a dozen. */
  double x = v * CANDLE_PRICE_SCALE;
  int64_t ticks = (int64_t)x;
  ticks += x - (double)ticks >= 0.5;
  o = fmt_u64(o, (uint64_t)ticks / CANDLE_PRICE_SCALE);
  unsigned frac = (unsigned)(ticks % CANDLE_PRICE_SCALE);
  if (frac) {   /* four decimals as two pairs, trailing zeros dropped */
    o[0] = '.';
    memcpy(o + 1, fmt_digit_pairs + 2 * (frac / 100), 2);
    memcpy(o + 3, fmt_digit_pairs + 2 * (frac % 100), 2);
    int n = 5;
    while (o[n - 1] == '0') n--;
    o += n;
  }
  return o;
}

static char *put_2(char *o, int v, char after) {
  memcpy(o, fmt_digit_pairs + 2 * v, 2);
  o[2] = after;
  return o + 3;
}

/* y-m-d of the day z days after 1970-01-01 (H. Hinnant's civil_from_days,
 * the inverse of the parser's days_from_civil): gmtime_r cost a tenth of a
 * bar's publishing. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

size_t candle_pub_bar_json(char *out, const char *sym, size_t sym_len, const char *tf, const candle_bar *b) {
  /* bar starts come from int64_t nanoseconds: years 1678 to 2262, four digits */
  int64_t days = b->start / 86400, sod = b->start % 86400, year;
  if (sod < 0) {
    sod += 86400;
    days--;
  }
  unsigned mon, mday;
  civil_from_days(days, &year, &mon, &mday);
  int hour = (int)(sod / 3600), min = (int)(sod / 60 % 60), sec = (int)(sod % 60);
  char *o = put_lit(out, "{\"S\":\"");
  memcpy(o, sym, sym_len);
  o = put_lit(o + sym_len, "\",\"tf\":\"");
  o = put_lit(o, tf);
  o = put_lit(o, "\",\"t\":\"");
  o = put_2(put_2(o, (int)(year / 100), '\0') - 1, (int)(year % 100), '-');
  o = put_2(put_2(o, (int)mon, '-'), (int)mday, 'T');
  o = put_2(put_2(put_2(o, hour, ':'), min, ':'), sec, 'Z');
  *o++ = '"';
  o = put_num(put_lit(o, ",\"o\":"), b->open);
  o = put_num(put_lit(o, ",\"h\":"), b->high);
  o = put_num(put_lit(o, ",\"l\":"), b->low);
  o = put_num(put_lit(o, ",\"c\":"), b->close);
  o = fmt_u64(put_lit(o, ",\"v\":"), b->volume);
  o = fmt_u64(put_lit(o, ",\"n\":"), b->count);
  /* VWAP to a hundredth of a cent, like the prices */
  o = b->volume > 0 ? put_num(put_lit(o, ",\"vw\":"), b->pv / (double)b->volume) : put_lit(o, ",\"vw\":null");
  o = put_lit(o, b->flags & CANDLE_F_MID ? ",\"src\":\"mid\"" : ",\"src\":\"trades\"");
  o = put_lit(o, b->flags & CANDLE_F_CLOSED ? ",\"closed\":true}" : ",\"closed\":false}");
  *o = '\0';
  return (size_t)(o - out);
}

/* ---- publishing ---------------------------------------------------------------- */

static void on_bar(void *ud, const char *sym, size_t sym_len, int tf, const candle_bar *b) {
  candle_pub *c = ud;
  if (!c->store) return;
  const char *tf_name = candle_tf_name(c->engine, tf);
  char channel[CANDLE_CHANNEL_MAX], json[CANDLE_JSON_MAX];
  /* candles:<tf>:<SYM> by hand: snprintf cost a quarter of a bar's publishing */
  char *o = put_lit(put_lit(channel, CANDLE_CHANNEL_PREFIX ":"), tf_name);
  *o++ = ':';
  memcpy(o, sym, sym_len);
  size_t n = (size_t)(o + sym_len - channel);
  size_t len = candle_pub_bar_json(json, sym, sym_len, tf_name, b);
  if (cstore_put(c->store, channel, n, json, len, b->start, candle_tf_seconds(c->engine, tf),
                 b->flags & CANDLE_F_CLOSED) < 0)
    c->stats.refused++;
  else
    c->stats.bars++;
}

static void on_tick(uv_timer_t *t) {
  candle_pub *c = t->data;
  candle_tick(c->engine, realtime_ns());
  if (c->store) cstore_flush(c->store);   /* the tick's in-progress bars, batched */
}

candle_pub *candle_pub_new(uv_loop_t *loop, const char *redis_url, const candle_opts *o, char *err, size_t err_len) {
  candle_pub *c = calloc(1, sizeof(*c));
  if (!c) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  candle_opts eo = *o;
  eo.on_bar = on_bar;
  eo.ud = c;
  c->engine = candle_new(&eo, err, err_len);
  if (!c->engine) {
    free(c);
    return NULL;
  }
  if (redis_url && !(c->store = cstore_new(loop, redis_url, candle_history_max(c->engine)))) {
    snprintf(err, err_len, "cannot create the candle store's Redis connection");
    candle_free(c->engine);
    free(c);
    return NULL;
  }
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  uv_timer_start(&c->timer, on_tick, CANDLE_TICK_MS, CANDLE_TICK_MS);
  uv_unref((uv_handle_t *)&c->timer);   /* the timer alone does not keep the loop running */
  return c;
}

static void closed_one(void *ud) {
  candle_pub *c = ud;
  if (--c->closing > 0) return;
  void (*done)(void *) = c->done;
  void *done_ud = c->done_ud;
  candle_free(c->engine);
  free(c);
  if (done) done(done_ud);
}

static void on_timer_closed(uv_handle_t *h) { closed_one(h->data); }

void candle_pub_close(candle_pub *c, void (*done)(void *), void *ud) {
  c->done = done;
  c->done_ud = ud;
  c->closing = 1 + (c->store != NULL);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  if (c->store) cstore_close(c->store, closed_one, c);
  c->store = NULL;
}

cstore *candle_pub_store(const candle_pub *c) { return c->store; }

const candle_engine *candle_pub_engine(const candle_pub *c) { return c->engine; }
void candle_pub_get_stats(const candle_pub *c, candle_pub_stats *out) { *out = c->stats; }

/* ---- the pipeline's messages ------------------------------------------------------ */

/* The numbers of the message as the parser read them (smsg_msg_number, by
 * field constant): the encoded payload is not searched, the time was
 * converted while it was checked. */
static TD_HOT_INLINE bool num(const smsg_msg *m, smsg_field f, double *out) { return smsg_msg_number(m, f, out) == 0; }

static TD_HOT_INLINE bool int_num(const smsg_msg *m, smsg_field f, int64_t *out) {
  double v;
  if (!num(m, f, &v)) return false;
  *out = (int64_t)v;
  return true;
}

void candle_pub_prefetch(const candle_pub *c, uint32_t id) { candle_prefetch(c->engine, id); }

void candle_pub_msg(candle_pub *c, const smsg_msg *m, uint32_t id) {
  if (m->kind != SMSG_TRADE && m->kind != SMSG_QUOTE && m->kind != SMSG_CORRECTION && m->kind != SMSG_CANCEL_ERROR)
    return;
  int64_t t;
  if (smsg_msg_time(m, &t) != 0) return;
  int64_t now = arrival_ns(c);
  double a, b, op, cp, tid;
  int64_t s, os, cs;
  /* trades are remembered by id, and corrections and cancels placed by the
   * id of the trade they name ("oi", "i"), not by their own time */
  switch (m->kind) {
    case SMSG_TRADE:
      if (num(m, SMSG_F_TRADE_P, &a) && int_num(m, SMSG_F_TRADE_S, &s) && num(m, SMSG_F_TRADE_I, &tid))
        candle_trade_ref_id(c->engine, id, (uint64_t)tid, t, a, s, now);
      break;
    case SMSG_QUOTE:
      if (num(m, SMSG_F_QUOTE_BP, &a) && num(m, SMSG_F_QUOTE_AP, &b)) candle_quote_id(c->engine, id, t, a, b, now);
      break;
    case SMSG_CORRECTION:
      if (num(m, SMSG_F_CORRECTION_OI, &tid) && num(m, SMSG_F_CORRECTION_OP, &op) &&
          int_num(m, SMSG_F_CORRECTION_OS, &os) && num(m, SMSG_F_CORRECTION_CP, &cp) &&
          int_num(m, SMSG_F_CORRECTION_CS, &cs))
        candle_correct_ref_id(c->engine, id, (uint64_t)tid, op, os, cp, cs, now);
      break;
    default:   /* cancel or error: either way the trade is withdrawn */
      if (num(m, SMSG_F_CANCEL_I, &tid) && num(m, SMSG_F_CANCEL_P, &a) && int_num(m, SMSG_F_CANCEL_S, &s))
        candle_cancel_ref_id(c->engine, id, (uint64_t)tid, a, s, now);
      break;
  }
}
