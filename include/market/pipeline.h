/* The one message path. Every source of market data (the simulated feed,
 * POST /quotes, the Alpaca upstream) hands its JSON here:
 *
 *   stream_msg parse + validate -> per-symbol seq (quote_store) -> payload
 *   encoded once -> publisher (PUBLISH <kind>:<SYMBOL>) + quote store
 *   (latest + history) + the quotes:last hash (latest per symbol).
 */
#ifndef TD_PIPELINE_H
#define TD_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/td_limits.h"
#include "stream_msg.h"

typedef struct td_pipeline td_pipeline;
struct td_publisher;
struct qstore;

typedef struct {
  uint64_t received[SMSG_KIND_COUNT];   /* valid messages by kind */
  uint64_t queued;                      /* handed to the publisher */
  uint64_t refused;                     /* symbol table full */
  uint64_t upstream;                    /* from the feed, published while holding the lease */
  uint64_t fenced;                      /* from the feed, dropped: the lease was not ours */
  uint64_t batches, batches_rejected;   /* POST /quotes */
  smsg_stats stream;                    /* feeds: skipped items by reason */
} pipeline_stats;

typedef struct {
  uint64_t accepted;
  uint64_t by_kind[SMSG_KIND_COUNT];
} pipeline_result;

/* Publishes through pub[0 .. TD_REDIS_PUBLISH_CONNS), which must outlive the
 * pipeline: quotes to "<channel_prefix>:SYMBOL", other kinds to their own. */
struct td_publisher;
td_pipeline *pipeline_new(uv_loop_t *loop, struct td_publisher *const *pub, const char *channel_prefix,
                          struct qstore *store);
void pipeline_free(td_pipeline *p);
/* Feeds (stream mode): bad items are skipped and counted. Returns the number
 * of messages published or a negative errno when the buffer is not JSON. A
 * feed with control messages of its own (Alpaca) parses with stream_msg
 * itself and hands each data message to pipeline_publish. */
int pipeline_feed(td_pipeline *p, const char *json, size_t len);
/* POST /quotes (batch mode): all or nothing. 0, or -EINVAL with `err`. */
int pipeline_batch(td_pipeline *p, const char *json, size_t len, pipeline_result *out, char err[SMSG_ERR_MAX]);
/* Publishes one upstream message that arrived parsed (the Alpaca client).
 * Like pipeline_feed, only while the lease given to pipeline_set_lease is
 * held (counted as fenced otherwise); POST /quotes is never fenced. */
void pipeline_publish(td_pipeline *p, const smsg_msg *m);
/* The upstream lease (redis/lease.h) checked for every feed message; NULL
 * (the default): no check. It must outlive the pipeline or be unset. */
struct td_lease;
void pipeline_set_lease(td_pipeline *p, const struct td_lease *lease);
/* This instance lost the lease: the upstream's messages still waiting in
 * the publishers' outboxes (Redis was away) are dropped, never sent late
 * over the new holder's; counted as fenced. Returns how many. */
size_t pipeline_drop_upstream(td_pipeline *p);
/* Positions shared through Redis (market/history_redis.h): every message
 * is published by the Lua script, which assigns its seq and epoch and keeps
 * it in the channel's stream (MAXLEN ~ maxlen); the quote store gets it
 * with that position when the script answers. 0 or UV_ENOMEM. */
int pipeline_use_redis_positions(td_pipeline *p, unsigned maxlen);
/* The publish script's SHA1 (hex), or NULL in memory-only mode. */
const char *pipeline_script_sha(const td_pipeline *p);
/* Every message published while this instance holds the lease (or has
 * none) also goes to the candles (NULL: none). Must outlive the pipeline
 * or be unset. */
struct candle_pub;
void pipeline_set_candles(td_pipeline *p, struct candle_pub *c);
/* Whether this instance builds bars now: candles on, and the upstream
 * lease held (or no lease). The others answer history from Redis. */
bool pipeline_aggregating(const td_pipeline *p);
void pipeline_get_stats(const td_pipeline *p, pipeline_stats *out);
struct qstore *pipeline_store(const td_pipeline *p);
/* The publishing connections' counters added up; true when all are ready.
 * `state` is the first connection's, or the state of one that is not ready. */
struct pub_stats;
bool pipeline_publisher_stats(const td_pipeline *p, struct pub_stats *sum);

#endif
