/* publisher: PUBLISH to Redis without ever blocking the loop.
 *
 * Messages are pipelined (up to TD_REDIS_MAX_INFLIGHT PUBLISH commands in
 * flight, RESP formatted here). When the connection is not READY or the
 * pipeline is full, a message waits in a bounded outbox that keeps only the
 * latest payload per channel: a newer message for a channel replaces the
 * older one (counted as conflated); a new channel past the outbox limit is
 * dropped (counted). The outbox drains when the connection becomes READY
 * and as replies come back.
 *
 * Latest values (the quotes:last hash): the quote store keeps the latest
 * payload per symbol, the one copy in the process. The publisher keeps only
 * which symbols changed (pub_last_changed, by symbol id) and every
 * TD_REDIS_LAST_FLUSH_MS writes their store values with one HSET per
 * tracked hash; after a reconnect every value ever written is written
 * again.
 *
 * Counting: every message offered ends as exactly one of published (a reply
 * came), errors (an error reply, or the connection went away first),
 * conflated or dropped; until then it is inflight or in the outbox. */
#ifndef TD_PUBLISHER_H
#define TD_PUBLISHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "redis/redis_conn.h"
#include "stream_msg.h"

/* Longest channel name: prefix, ':' and a symbol, with room to spare. */
#define PUB_CHANNEL_MAX 256
/* Longest payload: a news article with its body fits; anything larger is
 * refused rather than pipelined through memory. */
#define PUB_PAYLOAD_MAX (1024 * 1024)
/* Unwritten command bytes past which messages wait in the outbox: a socket
 * that stopped draining cannot grow hiredis's output buffer without bound
 * (the in-flight count alone allows 64 Ki messages of up to 1 MiB). Small,
 * because hiredis 0.14 memmoves the rest of that buffer after every write():
 * 4 MiB is still ~40 ms of quotes at 1 M/s, plenty to keep the pipe full. */
#define PUB_MAX_PENDING_BYTES (4 * 1024 * 1024)
/* Outbox entries keep their buffer for reuse up to this size, so the
 * steady state allocates nothing per message. */
#define PUB_ENTRY_KEEP_BYTES 4096
/* After the pipeline was full, the outbox drains once this many slots are
 * free (half the pipeline if smaller): one drain per batch, not per reply. */
#define PUB_DRAIN_HYSTERESIS 1024

/* Redis Cluster: the longest pause between a shard publisher's connection
 * attempts (each failed one reads the slot map again), so that a failover
 * is noticed within this of the promotion. */
#define PUB_SHARD_BACKOFF_MAX_MS 500

typedef struct td_publisher td_publisher;

/* Zero fields take the td_limits.h defaults. */
typedef struct pub_options {
  rconn_options conn;
  uint32_t max_inflight;   /* TD_REDIS_MAX_INFLIGHT */
  uint32_t max_outbox;     /* channels; TD_MAX_SYMBOLS */
  uint32_t last_flush_ms;  /* TD_REDIS_LAST_FLUSH_MS */
  /* Keys of pub_offer_key, 0 .. outbox_keys - 1 (0: none, every channel by
   * name). */
  uint32_t outbox_keys;
} pub_options;

/* A struct tag, not a typedef: pub_stats() is the function that fills it. */
struct pub_stats {
  rconn_state state;
  uint64_t published;  /* PUBLISH replies received */
  uint64_t conflated;  /* replaced in the outbox by a newer message */
  uint64_t dropped;    /* outbox full, payload too large, or closing */
  uint64_t errors;     /* PUBLISH error replies and PUBLISH lost with a connection */
  uint64_t reconnects;
  uint32_t inflight;
  uint32_t outbox;
  uint64_t last_written; /* fields written by HSET */
  uint64_t last_dropped; /* pub_last_changed refused (closing, kind not tracked), or a value too large */
  uint64_t script_retries; /* EVALSHA answered NOSCRIPT, sent again after SCRIPT LOAD */
  uint64_t last_errors;  /* HSET of latest values failed or lost with a connection (not in
                            `errors`, which only PUBLISH adds to: see the sum above) */
};

/* pub_publish results (>= 0); errors are negative. */
enum { PUB_SENT = 0, PUB_QUEUED = 1, PUB_CONFLATED = 2 };

/* Starts connecting at once. NULL on a bad URL (logged) or OOM. */
td_publisher *pub_new(uv_loop_t *loop, const char *redis_url, const pub_options *opt);
/* PUB_SENT, PUB_QUEUED, PUB_CONFLATED, or UV_ENOBUFS (dropped: outbox
 * full), UV_EINVAL (empty/too long channel, payload too large),
 * UV_ECANCELED (closing). */
/* pub_publish with flags: PUB_F_UPSTREAM marks a message of the upstream
 * feed, which pub_drop_upstream removes from the outbox when this instance
 * loses the fleet's lease (a stale quote must not reach Redis after another
 * instance took the feed over). */
#define PUB_F_UPSTREAM 1u
int pub_publish_flags(td_publisher *p, const char *channel, size_t channel_len, const char *payload,
                      size_t payload_len, unsigned flags);
/* Drops the outbox's messages whose newest is the upstream's (counted in
 * `dropped`); returns how many. */
size_t pub_drop_upstream(td_publisher *p);
/* Positions in Redis (market/history_redis.h): from now on every message is
 * published by the Lua script (EVALSHA, pipelined the same way), and each
 * script reply hands the message's position to cb with the `user` value it
 * was offered with (pub_publish_body). `conf` must outlive `p`. */
struct hr_conf;
struct hr_position;
typedef void (*pub_position_cb)(void *ud, uint32_t user, const char *channel, size_t channel_len, const char *body,
                                size_t body_len, const struct hr_position *pos);
void pub_use_script(td_publisher *p, const struct hr_conf *conf, pub_position_cb cb, void *ud);
/* pub_publish_flags for the script: `body` is the payload without its
 * position (hr_body_len). Same results and counting. */
int pub_publish_body(td_publisher *p, const char *channel, size_t channel_len, const char *body, size_t body_len,
                     unsigned flags, uint32_t user);
int pub_publish(td_publisher *p, const char *channel, size_t channel_len, const char *payload,
                size_t payload_len);
/* What pub_publish_flags (no script) or pub_publish_body (script) does, for
 * a channel the caller names by a small integer key as well: the outbox
 * finds it at by_key[key], without hashing the name. The caller keeps one
 * key per channel and one channel per key; a key past outbox_keys goes by
 * name. */
#define PUB_KEY_NONE UINT32_MAX
int pub_offer_key(td_publisher *p, uint32_t key, const char *channel, size_t channel_len, const char *data,
                  size_t len, unsigned flags, uint32_t user);
/* A PUBLISH of the subscriber's health check: sent now or not at all
 * (UV_EAGAIN while not connected or the pipeline is full; the next tick
 * tries again), never queued, and not in any counter above, so that
 * published + conflated + dropped + errors stays what the pipeline handed in. */
int pub_heartbeat(td_publisher *p, const char *channel, size_t channel_len, const char *payload, size_t len);
/* Writes the latest values of `kind` from `store` to `hash` (fields: the
 * symbols). Every call names the same store, which must outlive the
 * publisher. 0, UV_EINVAL (bad kind or hash, another store) or UV_ENOMEM. */
struct qstore;
int pub_last_track(td_publisher *p, const struct qstore *store, smsg_kind kind, const char *hash);
/* The store's latest entry of (kind, symbol id) changed: written with the
 * next flush. */
void pub_last_changed(td_publisher *p, smsg_kind kind, uint32_t id);
bool pub_ready(const td_publisher *p);
void pub_stats(const td_publisher *p, struct pub_stats *out);
const char *pub_state_name(const td_publisher *p);
/* Closes the connection; queued messages are discarded, done(ud) runs once
 * every handle is closed and `p` is freed. */
void pub_close(td_publisher *p, void (*done)(void *), void *ud);

#endif
