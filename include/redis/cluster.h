/* cluster: the slot map of a Redis Cluster, for the users that route by
 * slot (publisher, subscriber, history reader).
 *
 *   --redis-url redis+cluster://[user:password@]host:port,host:port,...
 *   --redis-url rediss+cluster://...   (the same, every connection TLS)
 *
 * The seeds are only where the map is read from. A map read (rcl_refresh)
 * connects to one address, asks `CLUSTER SLOTS`, and on any failure tries
 * the next one: the primaries of the current map first, then the seeds.
 * Reads are debounced (at most one per RCL_REFRESH_MIN_MS); a read that
 * finds no reachable node retries every RCL_RETRY_MS until one answers.
 *
 * The map holds, per slot, the index of its primary in a node table. The
 * table only grows (an address keeps its index for the process's life, so
 * a user may key its per-node connections by index) and is bounded by
 * RCL_NODES_MAX. Each user owns its own td_rcluster: maps are cheap, and a
 * user is told of a new map through its own callback. */
#ifndef TD_REDIS_CLUSTER_H
#define TD_REDIS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "redis/redis_conn.h"

#define RCL_SCHEME "redis+cluster://"
/* The same over TLS: every node connection is rediss:// (redis_tls.h). */
#define RCL_TLS_SCHEME "rediss+cluster://"
#define RCL_SLOTS 16384
/* Nodes ever seen as primaries; far above any test or real cluster size a
 * single tickerd would talk to, and the per-node arrays stay small. */
#define RCL_NODES_MAX 64
#define RCL_SEEDS_MAX 16
/* Map reads at most this often: a burst of MOVED replies costs one read. */
#define RCL_REFRESH_MIN_MS 100
/* No address answered: try again after this long. */
#define RCL_RETRY_MS 250
/* One map read's connect and reply bound. */
#define RCL_FETCH_TIMEOUT_MS 1000
#define RCL_NONE UINT16_MAX

typedef struct td_rcluster td_rcluster;

typedef struct rcl_node {
  char addr[80]; /* host:port as the cluster names it ([v6]:port) */
  char *url;     /* redis://[userinfo@]addr, for rconn_init */
  uint32_t slots; /* slots it owns in the current map */
} rcl_node;

/* A new map was read (`changed`: some slot has another owner than before). */
typedef void (*rcl_map_cb)(td_rcluster *cl, bool changed, void *ud);

/* True for a redis+cluster:// or rediss+cluster:// URL (any case). */
bool rcl_is_url(const char *url);
/* True for rediss+cluster:// (any case). */
bool rcl_is_tls(const char *url);
/* Checks a redis+cluster:// URL: 0, or UV_EINVAL with *err. With `out`
 * non-NULL (RCL_SEEDS_MAX of them), fills it with each seed's redis:// URL
 * (rediss:// for rediss+cluster://),
 * to free() by the caller, and *n with their count. */
int rcl_url_parse(const char *url, char **out, size_t *n, const char **err);
/* The slot of a key or shard channel: CRC16 of its hash tag, or of it all. */
uint16_t rcl_slot(const char *key, size_t n);

/* NULL on a bad URL (logged) or OOM. Reads the map at once. */
td_rcluster *rcl_new(uv_loop_t *loop, const char *url, const char *name, rcl_map_cb cb, void *ud);
/* Asks for a new map (a MOVED, a lost node). */
void rcl_refresh(td_rcluster *cl);
/* Learns one slot's owner from a MOVED reply's "<slot> <host:port>" and
 * asks for the whole map; returns the owner's index or -1. */
int rcl_moved(td_rcluster *cl, const char *text, size_t n);
/* The index of an "ASK <slot> <host:port>" reply's node (added if new), or -1. */
int rcl_ask_node(td_rcluster *cl, const char *text, size_t n);
bool rcl_loaded(const td_rcluster *cl);
/* The primary of `slot`: a node index, or -1 when none is known. */
int rcl_owner(const td_rcluster *cl, uint16_t slot);
const rcl_node *rcl_node_at(const td_rcluster *cl, int idx);
uint32_t rcl_node_count(const td_rcluster *cl);
/* Maps read so far. */
uint64_t rcl_maps(const td_rcluster *cl);
/* done(ud) once closed and freed. */
void rcl_close(td_rcluster *cl, void (*done)(void *), void *ud);

#endif
