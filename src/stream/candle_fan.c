/* Bars and trades from Redis to WebSocket and SSE clients (see candle_fan.h). */
#include "stream/candle_fan.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fnv1a.h"
#include "http/ws_frame.h"
#include "market/candle_pub.h"
#include "market/candle_store.h"
#include "market/stream_msg.h"
#include "market/subscriber.h"

/* What a channel carries: a symbol's bars of one timeframe, or its trades. */
typedef enum { FAN_BARS, FAN_TRADES } fan_kind;

typedef struct {
  char name[FAN_CHANNEL_MAX];
  size_t len;
  uint32_t hash;
  fan_kind kind;
  uint8_t sym_off;          /* the symbol's offset in name */
  hub_client **clients;
  uint32_t n, cap;
} fan_channel;

/* A history read from the store in flight, for client c. */
typedef struct fan_read {
  candle_fan *f;
  hub_client *c;
  cstore_read *r;
  struct fan_read *next;
  char tf[CANDLE_TF_NAME_MAX];
  size_t n;
  char sym[TD_SYMBOL_MAX + 1];
} fan_read;

struct candle_fan {
  td_hub *hub;
  td_subscriber *sub;
  const candle_engine *engine;
  cstore *store;                  /* history of bars built elsewhere; NULL: the engine's only */
  bool (*local)(void *ud);        /* whether this instance builds bars now */
  void *local_ud;
  fan_read *reads;
  fan_channel *ch[CANDLE_FAN_MAX_CHANNELS];
  uint32_t nch;
  candle_fan_stats stats;
};

candle_fan *candle_fan_new(td_hub *hub, td_subscriber *sub, const candle_engine *engine) {
  candle_fan *f = calloc(1, sizeof(*f));
  if (!f) return NULL;
  f->hub = hub;
  f->sub = sub;
  f->engine = engine;
  return f;
}

static void reads_forget(candle_fan *f, const hub_client *c);

void candle_fan_set_store(candle_fan *f, cstore *store, bool (*local)(void *ud), void *ud) {
  f->store = store;
  f->local = local;
  f->local_ud = ud;
}

void candle_fan_free(candle_fan *f) {
  if (!f) return;
  reads_forget(f, NULL);
  for (uint32_t i = 0; i < f->nch; i++) {
    free(f->ch[i]->clients);
    free(f->ch[i]);
  }
  free(f);
}

/* "candles:<tf>:<SYM>" into out; 0, or -EINVAL / -ENOENT. */
static int channel_name(const candle_fan *f, const char *sym, size_t n, const char *tf, size_t tf_len, char *out,
                        size_t *len) {
  if (!smsg_symbol_valid(sym, n)) return -EINVAL;
  int k = f->engine ? candle_tf_find(f->engine, tf, tf_len) : -1;
  if (k < 0) return -ENOENT;
  *len = (size_t)snprintf(out, FAN_CHANNEL_MAX, CANDLE_CHANNEL_PREFIX ":%s:%.*s", candle_tf_name(f->engine, k),
                          (int)n, sym);
  return 0;
}

/* The trade channel the pipeline publishes to: "trades:<SYM>". */
static int trade_channel_name(const char *sym, size_t n, char *out, size_t *len) {
  if (!smsg_symbol_valid(sym, n)) return -EINVAL;
  *len = (size_t)snprintf(out, FAN_CHANNEL_MAX, "%s:%.*s", smsg_kind_channel(SMSG_TRADE), (int)n, sym);
  return 0;
}

static int find_channel(const candle_fan *f, const char *name, size_t len) {
  uint32_t h = fnv1a(name, len);
  for (uint32_t i = 0; i < f->nch; i++)
    if (f->ch[i]->hash == h && f->ch[i]->len == len && !memcmp(f->ch[i]->name, name, len)) return (int)i;
  return -1;
}

static int client_pos(const fan_channel *ch, const hub_client *c) {
  for (uint32_t i = 0; i < ch->n; i++)
    if (ch->clients[i] == c) return (int)i;
  return -1;
}

static uint32_t client_channels(const candle_fan *f, const hub_client *c) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < f->nch; i++) n += client_pos(f->ch[i], c) >= 0;
  return n;
}

/* Adds c to the channel `name` of `kind` (made, and SUBSCRIBEd, by its
 * first client); candle_fan_subscribe's results. */
static int add_client(candle_fan *f, hub_client *c, const char *name, size_t len, fan_kind kind, size_t sym_len) {
  int i = find_channel(f, name, len);
  if (i >= 0 && client_pos(f->ch[i], c) >= 0) return 0;
  if (client_channels(f, c) >= (uint32_t)hub_opts(f->hub)->max_client_symbols) return -E2BIG;
  if (i < 0) {
    if (f->nch == CANDLE_FAN_MAX_CHANNELS) return -ENOSPC;
    fan_channel *ch = calloc(1, sizeof(*ch));
    if (!ch) return -ENOSPC;
    memcpy(ch->name, name, len + 1);
    ch->len = len;
    ch->hash = fnv1a(name, len);
    ch->kind = kind;
    ch->sym_off = (uint8_t)(len - sym_len);
    i = (int)f->nch;
    f->ch[f->nch++] = ch;
    f->stats.channels++;
    if (f->sub) sub_add(f->sub, ch->name);
  }
  fan_channel *ch = f->ch[i];
  if (ch->n == ch->cap) {
    uint32_t cap = ch->cap ? ch->cap * 2 : 4;
    hub_client **a = realloc(ch->clients, cap * sizeof(*a));
    if (!a) return -ENOSPC;
    ch->clients = a;
    ch->cap = cap;
  }
  ch->clients[ch->n++] = c;
  f->stats.subscriptions++;
  return 1;
}

int candle_fan_subscribe(candle_fan *f, hub_client *c, const char *sym, size_t n, const char *tf, size_t tf_len) {
  char name[FAN_CHANNEL_MAX];
  size_t len;
  int rc = channel_name(f, sym, n, tf, tf_len, name, &len);
  return rc < 0 ? rc : add_client(f, c, name, len, FAN_BARS, n);
}

int candle_fan_subscribe_trades(candle_fan *f, hub_client *c, const char *sym, size_t n) {
  char name[FAN_CHANNEL_MAX];
  size_t len;
  int rc = trade_channel_name(sym, n, name, &len);
  return rc < 0 ? rc : add_client(f, c, name, len, FAN_TRADES, n);
}

/* Removes client k of channel i; the channel goes with its last client. */
static void drop(candle_fan *f, uint32_t i, uint32_t k) {
  fan_channel *ch = f->ch[i];
  ch->clients[k] = ch->clients[--ch->n];
  f->stats.subscriptions--;
  if (ch->n > 0) return;
  if (f->sub) sub_remove(f->sub, ch->name);
  free(ch->clients);
  free(ch);
  f->ch[i] = f->ch[--f->nch];
  f->stats.channels--;
}

static int remove_client(candle_fan *f, hub_client *c, const char *name, size_t len) {
  int i = find_channel(f, name, len);
  int k = i >= 0 ? client_pos(f->ch[i], c) : -1;
  if (k < 0) return 0;
  drop(f, (uint32_t)i, (uint32_t)k);
  return 1;
}

int candle_fan_unsubscribe(candle_fan *f, hub_client *c, const char *sym, size_t n, const char *tf, size_t tf_len) {
  char name[FAN_CHANNEL_MAX];
  size_t len;
  return channel_name(f, sym, n, tf, tf_len, name, &len) < 0 ? 0 : remove_client(f, c, name, len);
}

int candle_fan_unsubscribe_trades(candle_fan *f, hub_client *c, const char *sym, size_t n) {
  char name[FAN_CHANNEL_MAX];
  size_t len;
  return trade_channel_name(sym, n, name, &len) < 0 ? 0 : remove_client(f, c, name, len);
}

void candle_fan_detach(candle_fan *f, hub_client *c) {
  reads_forget(f, c);
  for (uint32_t i = f->nch; i > 0; i--) {
    int k = client_pos(f->ch[i - 1], c);
    if (k >= 0) drop(f, i - 1, (uint32_t)k);
  }
}

/* The opening of a history message: {"type":"candles", (WebSocket) then
 * "symbol":..,"tf":..,"bars":[ */
static int history_head(char *o, const hub_client *c, const char *sym, size_t n, const char *tf) {
  return sprintf(o, "%s\"symbol\":\"%.*s\",\"tf\":\"%s\",\"bars\":[", c->transport == HUB_WS ? "{\"type\":\"candles\"," : "{",
                 (int)n, sym, tf);
}

/* History from this instance's engine. */
static void history_local(candle_fan *f, hub_client *c, const char *sym, size_t n, int k, uint32_t limit) {
  candle_bar *bars = malloc((limit ? limit : 1) * sizeof(*bars));
  char *text = malloc((size_t)limit * (CANDLE_JSON_MAX + 1) + CANDLE_JSON_MAX);
  if (!bars || !text) {
    free(bars);
    free(text);
    return;
  }
  int got = candle_history(f->engine, sym, n, k, limit, bars);
  const char *tf_name = candle_tf_name(f->engine, k);
  char *o = text + history_head(text, c, sym, n, tf_name);
  for (int i = 0; i < got; i++) {
    if (i) *o++ = ',';
    o += candle_pub_bar_json(o, sym, n, tf_name, &bars[i]);
  }
  o += sprintf(o, "]}");
  hub_send_text(f->hub, c, "candles", text, (size_t)(o - text));
  free(bars);
  free(text);
}

/* The store's answer (or its absence: "unavailable": true, no bars). */
static void send_stored(candle_fan *f, hub_client *c, const char *sym, size_t n, const char *tf, bool ok,
                        const char *const *bars, const size_t *lens, size_t nbars) {
  size_t total = CANDLE_JSON_MAX;
  for (size_t i = 0; i < nbars; i++) total += lens[i] + 1;
  char *text = malloc(total);
  if (!text) return;
  char *o = text + history_head(text, c, sym, n, tf);
  for (size_t i = 0; i < nbars; i++) {
    if (i) *o++ = ',';
    memcpy(o, bars[i], lens[i]);
    o += lens[i];
  }
  o += sprintf(o, ok ? "]}" : "],\"unavailable\":true}");
  hub_send_text(f->hub, c, "candles", text, (size_t)(o - text));
  free(text);
}

static void unlink_read(candle_fan *f, fan_read *r) {
  fan_read **pp = &f->reads;
  while (*pp != r) pp = &(*pp)->next;
  *pp = r->next;
}

static void on_stored(void *ud, bool ok, const char *const *bars, const size_t *lens, size_t n) {
  fan_read *r = ud;
  unlink_read(r->f, r);
  send_stored(r->f, r->c, r->sym, r->n, r->tf, ok, bars, lens, n);
  free(r);
}

/* Reads of client c (NULL: all) will not be answered: it left. */
static void reads_forget(candle_fan *f, const hub_client *c) {
  for (fan_read *r = f->reads, *next; r; r = next) {
    next = r->next;
    if (c && r->c != c) continue;
    cstore_read_cancel(r->r);
    unlink_read(f, r);
    free(r);
  }
}

/* History from the store: on an instance that does not build bars (a
 * standby of the lease), or does but never saw the symbol (it took the
 * lease over), the holder's bars as it stored them. */
static void history_stored(candle_fan *f, hub_client *c, const char *sym, size_t n, int k, uint32_t limit) {
  const char *tf_name = candle_tf_name(f->engine, k);
  char channel[FAN_CHANNEL_MAX];
  size_t len;
  fan_read *r = calloc(1, sizeof(*r));
  if (!r || channel_name(f, sym, n, tf_name, strlen(tf_name), channel, &len) < 0) {
    free(r);
    return;
  }
  *r = (fan_read){.f = f, .c = c, .n = n, .next = f->reads};
  memcpy(r->sym, sym, n);
  snprintf(r->tf, sizeof(r->tf), "%s", tf_name);
  if (!(r->r = cstore_read_start(f->store, channel, len, limit, on_stored, r))) {
    send_stored(f, c, sym, n, tf_name, false, NULL, NULL, 0);
    free(r);
    return;
  }
  f->reads = r;
}

void candle_fan_send_history(candle_fan *f, hub_client *c, const char *sym, size_t n, const char *tf, size_t tf_len,
                             uint32_t limit) {
  int k = f->engine ? candle_tf_find(f->engine, tf, tf_len) : -1;
  if (k < 0 || n > TD_SYMBOL_MAX) return;
  uint32_t max = candle_history_max(f->engine);
  if (limit > max) limit = max;
  bool local = !f->store || (f->local(f->local_ud) && candle_history(f->engine, sym, n, k, 0, NULL) >= 0);
  if (local) history_local(f, c, sym, n, k, limit);
  else history_stored(f, c, sym, n, k, limit);
}

/* A payload from Redis must be one JSON object on one line: anything else
 * (another producer's) would break the envelope or the SSE framing. A
 * trade with a position at its tail is the pipeline's own (smsg_encode)
 * and is not parsed again, as the hub does with quotes; bars are parsed
 * for their "closed". */
static bool payload_ok(fan_kind kind, const char *p, size_t n, bool *closed) {
  *closed = false;
  if (n == 0 || n > CANDLE_FAN_PAYLOAD_MAX || memchr(p, '\n', n) || memchr(p, '\r', n)) return false;
  uint64_t seq, epoch;
  if (kind == FAN_TRADES && smsg_payload_position(p, n, &seq, &epoch) == 0) return true;
  json_t *o = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
  bool ok = o && json_is_object(o);
  *closed = ok && kind == FAN_BARS && json_is_true(json_object_get(o, "closed"));
  json_decref(o);
  return ok;
}

/* The message of a channel as each transport sends it, encoded once:
 *   WebSocket  {"type":"candle","channel":..,"data":{bar}}
 *              {"type":"trade","channel":"trades:AAPL","symbol":"AAPL","data":{trade}}
 *   SSE        event: candle / event: trade, data: the payload */
static void encode(const fan_channel *ch, const char *payload, size_t len, wsd_variant out[HUB_TRANSPORTS]) {
  const char *type = ch->kind == FAN_TRADES ? "trade" : "candle";
  char head[64 + 2 * FAN_CHANNEL_MAX];
  int n = ch->kind == FAN_TRADES
              ? snprintf(head, sizeof(head), "{\"type\":\"trade\",\"channel\":\"%s\",\"symbol\":\"%s\",\"data\":", ch->name,
                         ch->name + ch->sym_off)
              : snprintf(head, sizeof(head), "{\"type\":\"candle\",\"channel\":\"%s\",\"data\":", ch->name);
  out[HUB_WS] = wsd_variant_of(ws_frame_text_wrapped(head, (size_t)n, payload, len, "}", 1));
  n = snprintf(head, sizeof(head), "event: %s\ndata: ", type);
  td_buf *b = buf_new((size_t)n + len + 2);
  if (b) {
    memcpy(b->data, head, (size_t)n);
    memcpy(b->data + n, payload, len);
    memcpy(b->data + n + len, "\n\n", 2);
    b->len = (uint32_t)((size_t)n + len + 2);
  }
  out[HUB_SSE] = wsd_variant_of(b);
}

/* The channel's kind by its name's prefix; false for another channel. */
static bool fan_channel_kind(const char *channel, size_t len, fan_kind *kind) {
  static const char bars[] = CANDLE_CHANNEL_PREFIX ":";
  const char *trades = smsg_kind_channel(SMSG_TRADE);
  size_t tn = strlen(trades);
  if (len >= sizeof(bars) && !memcmp(channel, bars, sizeof(bars) - 1)) *kind = FAN_BARS;
  else if (len > tn + 1 && !memcmp(channel, trades, tn) && channel[tn] == ':') *kind = FAN_TRADES;
  else return false;
  return true;
}

bool candle_fan_on_message(candle_fan *f, const char *channel, size_t channel_len, const char *payload,
                           size_t payload_len) {
  fan_kind kind;
  if (!fan_channel_kind(channel, channel_len, &kind)) return false;
  /* With --channel-prefix trades the quotes' channels are these too: the
   * hub gets every message of them as well. */
  bool theirs = kind == FAN_TRADES && !strcmp(hub_opts(f->hub)->channel_prefix, smsg_kind_channel(SMSG_TRADE));
  f->stats.messages++;
  int i = find_channel(f, channel, channel_len);
  if (i < 0) return !theirs;   /* unsubscribed while in flight */
  bool closed;
  if (!payload_ok(kind, payload, payload_len, &closed)) {
    f->stats.bad_messages++;
    return !theirs;
  }
  fan_channel *ch = f->ch[i];
  wsd_variant v[HUB_TRANSPORTS];
  encode(ch, payload, payload_len, v);
  /* backwards: a client closed for being slow is swap-removed behind us */
  for (uint32_t k = ch->n; k-- > 0;) {
    hub_client *c = ch->clients[k];
    if (!v[c->transport].plain) continue;
    /* a trade or an in-progress bar is followed by a newer one; a closed bar is not */
    if (hub_deliver(f->hub, c, &v[c->transport], !closed)) f->stats.deliveries++;
    else f->stats.dropped++;
  }
  wsd_variant_done(&v[HUB_WS]);
  wsd_variant_done(&v[HUB_SSE]);
  return !theirs;
}

void candle_fan_get_stats(const candle_fan *f, candle_fan_stats *out) { *out = f->stats; }
