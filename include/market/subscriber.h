/* subscriber: a Redis connection in subscribe mode with per-channel
 * reference counts, resubscription after reconnects, and a heartbeat.
 *
 * sub_add() counts references and sends SUBSCRIBE on 0 -> 1; sub_remove()
 * sends UNSUBSCRIBE on 1 -> 0. At most one (UN)SUBSCRIBE per channel is in
 * flight; a change requested while one is pending is sent when its reply
 * arrives. The channel's server-side state is then always known, and never
 * depends on how hiredis 0.14 matches overlapping subscribe/unsubscribe
 * replies to its per-channel callback table (which it edits on each reply).
 *
 * Patterns: sub_padd()/sub_premove() do the same with PSUBSCRIBE for a
 * literal prefix followed by '*' ("quotes:BRK.*"). One PUBLISH can reach
 * this connection by several routes (its channel's `message`, and a
 * `pmessage` per matching pattern); on_message hears it once (route_of in
 * subscriber.c says which route carries it).
 *
 * Health: a subscribed connection cannot PING in 0.14.1. The subscriber
 * always subscribes to a private channel tickerd:hb:<random id> (which also
 * keeps hiredis in subscribe mode while no other channel is subscribed);
 * given a publisher, it publishes there every heartbeat interval, and when
 * no heartbeat came back for the heartbeat timeout while that publisher was
 * READY, it reconnects. */
#ifndef TD_SUBSCRIBER_H
#define TD_SUBSCRIBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "publisher.h"
#include "redis/redis_conn.h"
#include "symtab.h"

/* How often a heartbeat is published: well under the timeout, cheap. */
#define TD_SUB_HEARTBEAT_MS 1000
/* No heartbeat for this long while the publisher is READY: the subscribed
 * connection is deaf (stalled server, lost subscription) and is replaced.
 * Several intervals, so one slow round trip is not a failure. */
#define TD_SUB_HEARTBEAT_TIMEOUT_MS 5000
#define SUB_HB_PREFIX "tickerd:hb:"
/* Channels subscribed at most: every kind of channel for every symbol. */
#define SUB_MAX_CHANNELS (4 * TD_MAX_SYMBOLS)
#define SUB_CHANNEL_MAX PUB_CHANNEL_MAX
/* Patterns (PSUBSCRIBE) held at most. Each message is matched against all
 * of them, so they stay few; the hub allows fewer (HUB_MAX_PATTERNS). */
#define SUB_MAX_PATTERNS 64

typedef struct td_subscriber td_subscriber;

typedef struct sub_callbacks {
  /* A message on a channel with a count > 0. Pointers valid during the call.
   * id: the symbol id of a quote channel (sub_options.syms), found with the
   * channel's one hash; SYMTAB_NONE for any other channel. */
  void (*on_message)(void *ud, uint32_t id, const char *channel, size_t channel_len, const char *payload,
                     size_t payload_len);
  /* ready: subscribed and healthy, or not. resubscribed: this READY follows a
   * lost connection, messages published meanwhile were missed. */
  void (*on_state)(void *ud, bool ready, bool resubscribed);
} sub_callbacks;

/* Zero fields take the defaults. */
typedef struct sub_options {
  td_publisher *heartbeat_pub; /* NULL: no heartbeat (no health check) */
  rconn_options conn;
  uint32_t heartbeat_ms;         /* TD_SUB_HEARTBEAT_MS */
  uint32_t heartbeat_timeout_ms; /* TD_SUB_HEARTBEAT_TIMEOUT_MS */
  /* Quote channels, <quote_prefix>:<symbol of syms>, are found by symbol id
   * (both NULL: every channel by name). syms must outlive the subscriber. */
  const symtab *syms;
  const char *quote_prefix;
} sub_options;

struct sub_stats {
  rconn_state state;
  uint32_t channels;     /* channels with a count > 0 */
  uint64_t messages;     /* delivered to on_message */
  uint64_t reconnects;
  uint64_t heartbeats;   /* heartbeats received */
  uint64_t hb_timeouts;  /* reconnects forced by a missing heartbeat */
  uint32_t patterns;     /* patterns with a count > 0 (one PSUBSCRIBE each) */
  uint64_t pmessages;    /* of messages, those delivered by a pattern */
  uint64_t pdups;        /* pmessages dropped: another route of the same PUBLISH delivered it */
};

/* Starts connecting at once. NULL on a bad URL (logged) or OOM. */
td_subscriber *sub_new(uv_loop_t *loop, const char *redis_url, const sub_callbacks *cb, void *ud,
                       const sub_options *opt);
/* 0, UV_EINVAL (empty/too long/heartbeat channel), UV_ENOBUFS (too many). */
int sub_add(td_subscriber *s, const char *channel);
void sub_remove(td_subscriber *s, const char *channel);
uint32_t sub_channel_count(const td_subscriber *s, const char *channel);
/* Patterns: a literal prefix then '*' (the only '*'). 0, UV_EINVAL (any
 * other form), UV_ENOBUFS (SUB_MAX_PATTERNS held). */
int sub_padd(td_subscriber *s, const char *pattern);
void sub_premove(td_subscriber *s, const char *pattern);
uint32_t sub_pattern_count(td_subscriber *s, const char *pattern);
/* The private heartbeat channel name. */
const char *sub_heartbeat_channel(const td_subscriber *s);
void sub_stats(const td_subscriber *s, struct sub_stats *out);
/* How long the subscriber has been reading behind what Redis sends
 * (rconn_behind_ms), 0 when it keeps up. A Cluster's sharded connections
 * are not measured: 0. */
uint64_t sub_behind_ms(const td_subscriber *s);
/* The heartbeat publisher must outlive the subscriber, or be closed after it. */
void sub_close(td_subscriber *s, void (*done)(void *), void *ud);

#endif
