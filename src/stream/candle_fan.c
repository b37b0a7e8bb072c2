/* Bars from Redis to WebSocket and SSE clients (see candle_fan.h). */
#include "stream/candle_fan.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fnv1a.h"
#include "market/candle_pub.h"
#include "market/stream_msg.h"
#include "market/subscriber.h"

typedef struct {
  char name[CANDLE_CHANNEL_MAX];
  size_t len;
  uint32_t hash;
  hub_client **clients;
  uint32_t n, cap;
} fan_channel;

struct candle_fan {
  td_hub *hub;
  td_subscriber *sub;
  const candle_engine *engine;
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

void candle_fan_free(candle_fan *f) {
  if (!f) return;
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
  *len = (size_t)snprintf(out, CANDLE_CHANNEL_MAX, CANDLE_CHANNEL_PREFIX ":%s:%.*s", candle_tf_name(f->engine, k),
                          (int)n, sym);
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

int candle_fan_subscribe(candle_fan *f, hub_client *c, const char *sym, size_t n, const char *tf, size_t tf_len) {
  char name[CANDLE_CHANNEL_MAX];
  size_t len;
  int rc = channel_name(f, sym, n, tf, tf_len, name, &len);
  if (rc < 0) return rc;
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

int candle_fan_unsubscribe(candle_fan *f, hub_client *c, const char *sym, size_t n, const char *tf, size_t tf_len) {
  char name[CANDLE_CHANNEL_MAX];
  size_t len;
  if (channel_name(f, sym, n, tf, tf_len, name, &len) < 0) return 0;
  int i = find_channel(f, name, len);
  int k = i >= 0 ? client_pos(f->ch[i], c) : -1;
  if (k < 0) return 0;
  drop(f, (uint32_t)i, (uint32_t)k);
  return 1;
}

void candle_fan_detach(candle_fan *f, hub_client *c) {
  for (uint32_t i = f->nch; i > 0; i--) {
    int k = client_pos(f->ch[i - 1], c);
    if (k >= 0) drop(f, i - 1, (uint32_t)k);
  }
}

void candle_fan_send_history(candle_fan *f, hub_client *c, const char *sym, size_t n, const char *tf, size_t tf_len,
                             uint32_t limit) {
  int k = f->engine ? candle_tf_find(f->engine, tf, tf_len) : -1;
  if (k < 0) return;
  uint32_t max = candle_history_max(f->engine);
  if (limit > max) limit = max;
  candle_bar *bars = malloc((limit ? limit : 1) * sizeof(*bars));
  char *text = malloc((size_t)limit * (CANDLE_JSON_MAX + 1) + CANDLE_JSON_MAX);
  if (!bars || !text) {
    free(bars);
    free(text);
    return;
  }
  int got = candle_history(f->engine, sym, n, k, limit, bars);
  const char *tf_name = candle_tf_name(f->engine, k);
  char *o = text;
  if (c->transport == HUB_WS) o += sprintf(o, "{\"type\":\"candles\",");
  else *o++ = '{';
  o += sprintf(o, "\"symbol\":\"%.*s\",\"tf\":\"%s\",\"bars\":[", (int)n, sym, tf_name);
  for (int i = 0; i < got; i++) {
    if (i) *o++ = ',';
    o += candle_pub_bar_json(o, sym, n, tf_name, &bars[i]);
  }
  o += sprintf(o, "]}");
  hub_send_text(f->hub, c, "candles", text, (size_t)(o - text));
  free(bars);
  free(text);
}

/* A payload from Redis must be one JSON object on one line: anything else
 * (another producer's) would break the envelope or the SSE framing. Sets
 * *closed from its "closed". */
static bool payload_ok(const char *p, size_t n, bool *closed) {
  if (n == 0 || n > CANDLE_FAN_PAYLOAD_MAX || memchr(p, '\n', n) || memchr(p, '\r', n)) return false;
  json_t *o = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
  bool ok = o && json_is_object(o);
  *closed = ok && json_is_true(json_object_get(o, "closed"));
  json_decref(o);
  return ok;
}

/* Bars skip the hub's per-client limits (they are sent per client), so
 * they keep their own: past the soft limit a client gets only final bars,
 * past the hard one none (the hub or the write timeout closes it). */
static bool client_takes(const candle_fan *f, const hub_client *c, bool closed) {
  size_t queued = conn_queued_bytes(c->conn);
  const td_hub_opts *o = hub_opts(f->hub);
  return queued < (size_t)o->client_hard_bytes && (closed || queued < (size_t)o->client_soft_bytes);
}

bool candle_fan_on_message(candle_fan *f, const char *channel, size_t channel_len, const char *payload,
                           size_t payload_len) {
  static const char prefix[] = CANDLE_CHANNEL_PREFIX ":";
  if (channel_len < sizeof(prefix) || memcmp(channel, prefix, sizeof(prefix) - 1)) return false;
  f->stats.messages++;
  int i = find_channel(f, channel, channel_len);
  if (i < 0) return true;   /* unsubscribed while in flight */
  bool closed;
  if (!payload_ok(payload, payload_len, &closed)) {
    f->stats.bad_messages++;
    return true;
  }
  fan_channel *ch = f->ch[i];
  size_t cap = 48 + ch->len + payload_len;
  char *env = malloc(cap);
  if (!env) return true;
  int n = snprintf(env, cap, "{\"type\":\"candle\",\"channel\":\"%s\",\"data\":%.*s}", ch->name, (int)payload_len,
                   payload);
  for (uint32_t k = 0; k < ch->n; k++) {
    hub_client *c = ch->clients[k];
    if (!client_takes(f, c, closed)) {
      f->stats.dropped++;
      continue;
    }
    if (c->transport == HUB_WS) hub_send_text(f->hub, c, "candle", env, (size_t)n);
    else hub_send_text(f->hub, c, "candle", payload, payload_len);
    f->stats.deliveries++;
  }
  free(env);
  return true;
}

void candle_fan_get_stats(const candle_fan *f, candle_fan_stats *out) { *out = f->stats; }
