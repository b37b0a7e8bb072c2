/* The one message path (see pipeline.h). */
#include "market/pipeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fnv1a.h"
#include "base/log.h"
#include "market/history_redis.h"
#include "market/candle_pub.h"
#include "market/publisher.h"
#include "market/quote_store.h"
#include "base/td_limits.h"
#include "redis/lease.h"

/* "<prefix or kind>:<SYMBOL>" */
#define PIPE_CHANNEL_MAX (TD_CHANNEL_PREFIX_MAX + 1 + TD_SYMBOL_MAX + 1)

struct td_pipeline {
  uv_loop_t *loop;
  const char *channel_prefix;
  qstore *store;
  td_publisher *const *pub;                   /* TD_REDIS_PUBLISH_CONNS connections */
  pipeline_stats stats;
  pipeline_result *batch;                      /* while a batch is delivered */
  const td_lease *lease;                       /* NULL: upstream messages always pass */
  hr_conf *positions;                          /* NULL: positions of this process (memory only) */
  candle_pub *candles;                         /* NULL: no candles */
  /* The channel of (kind, symbol id) is <prefix of kind>:<symbol>; kinds
   * whose prefix is the same (the quote prefix set to "trades") share a
   * slot, so that one channel has one outbox key (PIPE_KEY). */
  uint8_t slot[SMSG_KIND_COUNT];
};

/* The publisher's outbox key of a channel: its symbol id and slot. */
#define PIPE_KEY(p, kind, id) ((uint32_t)(id) * SMSG_KIND_COUNT + (p)->slot[kind])

td_pipeline *pipeline_new(uv_loop_t *loop, td_publisher *const *pub, const char *channel_prefix, qstore *store) {
  td_pipeline *p = calloc(1, sizeof(*p));
  if (!p) return NULL;
  p->loop = loop;
  p->channel_prefix = channel_prefix;
  p->store = store;
  for (int k = 0; k < SMSG_KIND_COUNT; k++) {
    const char *prefix = k == SMSG_QUOTE ? channel_prefix : smsg_kind_channel((smsg_kind)k);
    p->slot[k] = (uint8_t)k;
    for (int j = 0; j < k; j++)
      if (!strcmp(prefix, j == SMSG_QUOTE ? channel_prefix : smsg_kind_channel((smsg_kind)j))) {
        p->slot[k] = p->slot[j];
        break;
      }
  }
  p->pub = pub;
  char last_hash[TD_CHANNEL_PREFIX_MAX + 8];   /* "quotes:last" */
  snprintf(last_hash, sizeof(last_hash), "%s:last", channel_prefix);
  if (pub_last_track(pub[0], store, SMSG_QUOTE, last_hash) < 0) {
    free(p);
    return NULL;
  }
  return p;
}

void pipeline_free(td_pipeline *p) {
  if (p) free(p->positions);
  free(p);
}
qstore *pipeline_store(const td_pipeline *p) { return p->store; }

/* The connection of a channel: always the same one, so its order holds. */
static unsigned channel_shard(const char *channel, size_t n) {
  return fnv1a(channel, n) % TD_REDIS_PUBLISH_CONNS;
}

void pipeline_set_lease(td_pipeline *p, const td_lease *lease) { p->lease = lease; }
void pipeline_set_candles(td_pipeline *p, candle_pub *c) { p->candles = c; }

/* `user` of a script message: its kind and its symbol's id. */
#define PIPE_USER(kind, id) ((uint32_t)(kind) | (uint32_t)(id) << 8)
_Static_assert(TD_MAX_SYMBOLS <= (1u << 24) && SMSG_KIND_COUNT <= 256, "kind and symbol id share 32 bits");

/* The message is kept, with its position, once Redis has given it one. */
static void on_position(void *ud, uint32_t user, const char *channel, size_t chn, const char *body, size_t bn,
                        const hr_position *pos) {
  td_pipeline *p = ud;
  smsg_kind kind = (smsg_kind)(user & 0xff);
  uint32_t id = user >> 8;
  td_buf *payload = hr_payload(body, bn, pos);
  if (!payload) return;
  qstore_insert_id(p->store, kind, id, payload, pos->epoch, pos->seq, uv_now(p->loop));
  if (kind == SMSG_QUOTE) pub_last_changed(p->pub[0], SMSG_QUOTE, id);
  buf_unref(payload);
}

const char *pipeline_script_sha(const td_pipeline *p) { return p->positions ? p->positions->sha : NULL; }

int pipeline_use_redis_positions(td_pipeline *p, unsigned maxlen) {
  p->positions = calloc(1, sizeof(*p->positions));
  if (!p->positions) return UV_ENOMEM;
  hr_conf_init(p->positions, qstore_epoch_hex(p->store), maxlen);
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) pub_use_script(p->pub[i], p->positions, on_position, p);
  return 0;
}

/* Positions from Redis: the payload goes without one to the script, and
 * comes back to on_position with it. */
bool pipeline_aggregating(const td_pipeline *p) { return p->candles && (!p->lease || lease_held(p->lease)); }

/* Bars are built on the lease holder only (or without a lease), so each
 * is published once; they read the parsed message, and know the symbol by
 * the id interned in publish_msg. */
static void to_candles(td_pipeline *p, const smsg_msg *m, uint32_t id) {
  if (pipeline_aggregating(p)) candle_pub_msg(p->candles, m, id);
}

static void publish_body(td_pipeline *p, td_publisher *pub, const char *channel, size_t n, uint32_t id,
                         const smsg_msg *m, unsigned pub_flags) {
  td_buf *payload = smsg_encode(m, 0, qstore_epoch_hex(p->store));
  if (!payload) return;
  size_t bn = hr_body_len(payload->data, payload->len);
  if (bn) pub_offer_key(pub, PIPE_KEY(p, m->kind, id), channel, n, payload->data, bn, pub_flags, PIPE_USER(m->kind, id));
  to_candles(p, m, id);
  buf_unref(payload);
}

static void count_msg(td_pipeline *p, const smsg_msg *m) {
  p->stats.received[m->kind]++;
  p->stats.queued++;
  if (p->batch) {
    p->batch->accepted++;
    p->batch->by_kind[m->kind]++;
  }
}

static void publish_msg(td_pipeline *p, const smsg_msg *m, unsigned pub_flags) {
  /* The symbol is interned here, once, where it enters: the store and the
   * publisher index by the id from now on. */
  uint32_t id;
  uint64_t seq = qstore_intern(p->store, m->symbol, m->symbol_len, &id) == 0
                     ? qstore_next_seq_id(p->store, m->kind, id)
                     : 0;
  if (seq == 0) {
    p->stats.refused++;
    return;
  }
  /* the candles' lines for this symbol start loading now, behind the
   * encoding and publishing below, not when to_candles needs them */
  if (pipeline_aggregating(p)) candle_pub_prefetch(p->candles, id);
  /* quotes go to the configured prefix; other kinds to their own channels */
  const char *prefix = m->kind == SMSG_QUOTE ? p->channel_prefix : m->channel;
  /* "<prefix>:<SYMBOL>" by hand: snprintf cost as much as the PUBLISH itself */
  char channel[PIPE_CHANNEL_MAX];
  size_t plen = strlen(prefix);
  memcpy(channel, prefix, plen);
  channel[plen] = ':';
  memcpy(channel + plen + 1, m->symbol, m->symbol_len);
  size_t n = plen + 1 + m->symbol_len;
  if (p->positions) {
    publish_body(p, p->pub[channel_shard(channel, n)], channel, n, id, m, pub_flags);
    count_msg(p, m);
    return;
  }
  td_buf *payload = smsg_encode(m, seq, qstore_epoch_hex(p->store));
  if (!payload) return;
  pub_offer_key(p->pub[channel_shard(channel, n)], PIPE_KEY(p, m->kind, id), channel, n, payload->data, payload->len,
                pub_flags, 0);
  qstore_insert_id(p->store, m->kind, id, payload, qstore_epoch(p->store), seq, uv_now(p->loop));
  if (m->kind == SMSG_QUOTE) pub_last_changed(p->pub[0], SMSG_QUOTE, id);
  to_candles(p, m, id);
  buf_unref(payload);
  count_msg(p, m);
}

/* The fence of the upstream's messages: only the lease holder publishes
 * them, checked here, message by message, against the lease's deadline (a
 * feed stopped on the role change may still hand over what it had; a
 * process paused past its deadline resumes here). */
void pipeline_publish(td_pipeline *p, const smsg_msg *m) {
  if (p->lease && !lease_held(p->lease)) {
    p->stats.fenced++;
    return;
  }
  p->stats.upstream++;
  publish_msg(p, m, PUB_F_UPSTREAM);
}

static void on_feed_msg(void *ud, const smsg_msg *m) { pipeline_publish(ud, m); }
static void on_batch_msg(void *ud, const smsg_msg *m) { publish_msg(ud, m, 0); }

/* The candles read every message's numbers: the parser keeps their values
 * while it checks them, for them only (a cost the pipeline without
 * candles does not pay). */
static unsigned parse_opts(const td_pipeline *p) { return pipeline_aggregating(p) ? SMSG_OPT_NUMBERS : 0; }

int pipeline_feed(td_pipeline *p, const char *json, size_t len) {
  return smsg_parse_stream_opt(json, len, parse_opts(p), on_feed_msg, NULL, p, &p->stats.stream);
}

int pipeline_batch(td_pipeline *p, const char *json, size_t len, pipeline_result *out, char err[SMSG_ERR_MAX]) {
  memset(out, 0, sizeof(*out));
  p->stats.batches++;
  p->batch = out;
  int rc = smsg_parse_batch_opt(json, len, parse_opts(p), on_batch_msg, p, err);
  p->batch = NULL;
  if (rc < 0) {
    p->stats.batches_rejected++;
    return rc;
  }
  return 0;
}

size_t pipeline_drop_upstream(td_pipeline *p) {
  size_t n = 0;
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) n += pub_drop_upstream(p->pub[i]);
  p->stats.fenced += n;
  return n;
}

void pipeline_get_stats(const td_pipeline *p, pipeline_stats *out) { *out = p->stats; }

bool pipeline_publisher_stats(const td_pipeline *p, struct pub_stats *sum) {
  bool ready = true;
  memset(sum, 0, sizeof(*sum));
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) {
    struct pub_stats s;
    pub_stats(p->pub[i], &s);
    if (i == 0 || s.state != RCONN_READY) sum->state = s.state;
    ready = ready && pub_ready(p->pub[i]);
    sum->published += s.published;
    sum->conflated += s.conflated;
    sum->dropped += s.dropped;
    sum->errors += s.errors;
    sum->reconnects += s.reconnects;
    sum->inflight += s.inflight;
    sum->outbox += s.outbox;
    sum->last_written += s.last_written;
    sum->last_dropped += s.last_dropped;
    sum->last_errors += s.last_errors;
    sum->script_retries += s.script_retries;
  }
  return ready;
}
