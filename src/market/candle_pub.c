/* The candle engine on the loop, fed by the pipeline, publishing to Redis
 * (see candle_pub.h). */
#include "market/candle_pub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "market/publisher.h"

struct candle_pub {
  uv_timer_t timer;
  candle_engine *engine;
  td_publisher *pub;         /* NULL: bars are not published */
  candle_pub_stats stats;
  int closing;               /* handles (timer, publisher) not closed yet */
  void (*done)(void *);
  void *done_ud;
};

static int64_t realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the JSON of a bar ------------------------------------------------------- */

/* 10 significant digits: a price to a hundredth of a cent up to $1,000,000,
 * and the same text on every path (Redis, WebSocket, SSE, GET). */
static char *put_num(char *o, const char *key, double v) {
  return o + sprintf(o, ",\"%s\":%.10g", key, v);
}

size_t candle_pub_bar_json(char *out, const char *sym, size_t sym_len, const char *tf, const candle_bar *b) {
  time_t sec = (time_t)b->start;
  struct tm tm;
  gmtime_r(&sec, &tm);
  char *o = out;
  o += sprintf(o, "{\"S\":\"%.*s\",\"tf\":\"%s\",\"t\":\"%04d-%02d-%02dT%02d:%02d:%02dZ\"", (int)sym_len, sym, tf,
               tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  o = put_num(o, "o", b->open);
  o = put_num(o, "h", b->high);
  o = put_num(o, "l", b->low);
  o = put_num(o, "c", b->close);
  o += sprintf(o, ",\"v\":%llu,\"n\":%u", (unsigned long long)b->volume, b->count);
  if (b->volume > 0) o = put_num(o, "vw", b->pv / (double)b->volume);
  else o += sprintf(o, ",\"vw\":null");
  o += sprintf(o, ",\"src\":\"%s\",\"closed\":%s}", b->flags & CANDLE_F_MID ? "mid" : "trades",
               b->flags & CANDLE_F_CLOSED ? "true" : "false");
  return (size_t)(o - out);
}

/* ---- publishing ---------------------------------------------------------------- */

static void on_bar(void *ud, const char *sym, size_t sym_len, int tf, const candle_bar *b) {
  candle_pub *c = ud;
  if (!c->pub) return;
  const char *tf_name = candle_tf_name(c->engine, tf);
  char channel[CANDLE_CHANNEL_MAX], json[CANDLE_JSON_MAX];
  int n = snprintf(channel, sizeof(channel), CANDLE_CHANNEL_PREFIX ":%s:%.*s", tf_name, (int)sym_len, sym);
  size_t len = candle_pub_bar_json(json, sym, sym_len, tf_name, b);
  if (pub_publish(c->pub, channel, (size_t)n, json, len) < 0) c->stats.refused++;
  else c->stats.bars++;
}

static void on_tick(uv_timer_t *t) {
  candle_pub *c = t->data;
  candle_tick(c->engine, realtime_ns());
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
  if (redis_url && !(c->pub = pub_new(loop, redis_url, NULL))) {
    snprintf(err, err_len, "cannot create the candle publisher");
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
  c->closing = 1 + (c->pub != NULL);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  if (c->pub) pub_close(c->pub, closed_one, c);
  c->pub = NULL;
}

bool candle_pub_publisher_stats(const candle_pub *c, struct pub_stats *out) {
  if (!c->pub) return false;
  pub_stats(c->pub, out);
  return true;
}

const candle_engine *candle_pub_engine(const candle_pub *c) { return c->engine; }
void candle_pub_get_stats(const candle_pub *c, candle_pub_stats *out) { *out = c->stats; }

/* ---- reading the published payload ------------------------------------------------ */

/* The number after ,"<key>": in a payload smsg_encode wrote (compact, keys
 * in schema order; codes and conditions are escaped strings, so the
 * pattern cannot occur inside one). False when absent. */
static bool payload_num(const char *p, size_t n, const char *key, double *out) {
  char pat[8];
  int k = snprintf(pat, sizeof(pat), ",\"%s\":", key);
  const char *at = memmem(p, n, pat, (size_t)k);
  if (!at) return false;
  char *end;
  *out = strtod(at + k, &end);
  return end != at + k;
}

static bool payload_int(const char *p, size_t n, const char *key, int64_t *out) {
  double v;
  if (!payload_num(p, n, key, &v)) return false;
  *out = (int64_t)v;
  return true;
}

void candle_pub_msg(candle_pub *c, smsg_kind kind, const char *sym, size_t sym_len, const char *payload, size_t len) {
  if (kind != SMSG_TRADE && kind != SMSG_QUOTE && kind != SMSG_CORRECTION && kind != SMSG_CANCEL_ERROR) return;
  int64_t sec;
  uint32_t nsec;
  if (smsg_payload_time(payload, len, &sec, &nsec) != 0) return;
  int64_t t = sec * 1000000000 + nsec, now = realtime_ns();
  double a, b, cp;
  int64_t s, cs;
  switch (kind) {
    case SMSG_TRADE:
      if (payload_num(payload, len, "p", &a) && payload_int(payload, len, "s", &s))
        candle_trade(c->engine, sym, sym_len, t, a, s, now);
      break;
    case SMSG_QUOTE:
      if (payload_num(payload, len, "bp", &a) && payload_num(payload, len, "ap", &b))
        candle_quote(c->engine, sym, sym_len, t, a, b, now);
      break;
    case SMSG_CORRECTION:
      if (payload_num(payload, len, "op", &a) && payload_int(payload, len, "os", &s) &&
          payload_num(payload, len, "cp", &cp) && payload_int(payload, len, "cs", &cs))
        candle_correct(c->engine, sym, sym_len, t, a, s, cp, cs, now);
      break;
    default:   /* cancel or error: either way the trade is withdrawn */
      if (payload_num(payload, len, "p", &a) && payload_int(payload, len, "s", &s))
        candle_cancel(c->engine, sym, sym_len, t, a, s, now);
      break;
  }
}
