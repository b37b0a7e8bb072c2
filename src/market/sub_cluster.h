/* sub_cluster: the subscriber of a Redis Cluster (redis+cluster://, or
 * rediss+cluster:// over TLS), with
 * sharded pub/sub. subscriber.c hands every call to it when the URL is a
 * cluster's; the callbacks and counting are those of subscriber.h.
 *
 * One connection per primary that owns a subscribed channel's slot, not
 * one per channel. Each channel is SSUBSCRIBEd on its own (one SSUBSCRIBE
 * may only name channels of one slot), pipelined on its node's connection.
 * hiredis (0.14 and 1.x) does not know the sharded replies, so these
 * connections are net/tls.h connections (plain TCP, or TLS under
 * rediss+cluster:// with redis_tls_ctx()'s trust and the announced address
 * checked) read with hiredis's reply reader (redisReader); the pushed arrays, which Redis 7 sends under RESP2 as
 * `smessage <channel> <payload>`, `ssubscribe <channel> <n>` and
 * `sunsubscribe <channel> <n>`, are handled here.
 *
 * A channel's state is NONE, SUBSCRIBING, SUBSCRIBED or UNSUBSCRIBING, with
 * at most one command in flight, as in subscriber.c. A `sunsubscribe` the
 * subscriber did not ask for (its slot migrated), an error reply (MOVED), or
 * a lost node connection puts the affected channels back to NONE and reads
 * the slot map again; with the new map each is subscribed on its slot's
 * owner. Once every wanted channel is subscribed again, on_state(true,
 * true) tells the hub that messages may have been missed, and the hub
 * checks each channel's next position (gap -> recovery from the stream). */
#ifndef TD_SUB_CLUSTER_H
#define TD_SUB_CLUSTER_H

#include "market/subscriber.h"

/* A node connection's connect bound, and the pause before a lost node is
 * tried again (the map is read again meanwhile). */
#define SUBC_CONNECT_TIMEOUT_MS 2000
#define SUBC_RETRY_MS 250
/* Buckets of the channel table (chained; SUB_MAX_CHANNELS at most). */
#define SUBC_BUCKETS 16384
/* Unwritten bytes one node connection may hold (SSUBSCRIBE commands for
 * every channel fit many times over); past it the node is dropped. */
#define SUBC_WRITE_QUEUE_MAX (8u << 20)

typedef struct sub_cluster sub_cluster;

sub_cluster *subc_new(uv_loop_t *loop, const char *url, const sub_callbacks *cb, void *ud, const sub_options *opt);
int subc_add(sub_cluster *sc, const char *channel);
void subc_remove(sub_cluster *sc, const char *channel);
uint32_t subc_channel_count(const sub_cluster *sc, const char *channel);
void subc_stats(const sub_cluster *sc, struct sub_stats *out);
void subc_close(sub_cluster *sc, void (*done)(void *), void *ud);

#endif
