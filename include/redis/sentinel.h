/* sentinel: where the Redis primary is, as Redis Sentinel says.
 *
 * `redis+sentinel://[user:password@]host1:26379,host2:26379/mymaster[/db]`
 * names Sentinels and a master name instead of a server. Every td_rconn
 * of the process made from such a URL shares one target object per URL
 * (rconn_init attaches to it, the last close detaches): the object asks
 * the Sentinels, in the URL's order and with SENTINEL_QUERY_TIMEOUT_MS
 * each, `SENTINEL get-master-addr-by-name <master>`, and every connection
 * asks it for the address before each connect attempt. A connection
 * checks with ROLE that the node is a master before it is READY (a
 * Sentinel's answer can be stale); a replica is dropped and the
 * Sentinels asked again.
 *
 * Failovers are followed two ways: a connection per Sentinel holds a
 * SUBSCRIBE to `+switch-master`, and any connection that drops or fails
 * makes the object ask again (at most every SENTINEL_RECHECK_MIN_MS). When
 * the primary moves, every attached connection that is not on the new
 * address reconnects at once, without waiting for its backoff.
 *
 * Right after a failover the Sentinels that were not its leader still
 * name the old primary until they hear of the new configuration. Each
 * answer is therefore read with its configuration epoch (`SENTINEL MASTER`,
 * pipelined behind the address query), and one older than the newest
 * seen is passed over for the next Sentinel; a +switch-master that moved
 * the primary raises that floor by one (a failover always makes a newer
 * epoch). If whole rounds bring only older configurations
 * (SENTINEL_STALE_ROUNDS_MAX of them: the Sentinels were reset), the
 * newest of those answers is taken.
 *
 * The shared object is found by URL in a small per-process registry
 * rather than passed down: every module that talks to Redis makes its
 * connection from the `--redis-url` string, and one target per URL keeps
 * those constructors unchanged. The userinfo and db are the primary's;
 * the Sentinels' own credentials (Sentinel's `requirepass`, or an ACL user)
 * are set once per process with sentinel_set_auth. */
#ifndef TD_SENTINEL_H
#define TD_SENTINEL_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "redis/redis_conn.h"

#define SENTINEL_SCHEME "redis+sentinel://"
/* The same over TLS: Sentinels and primary are all reached as rediss://. */
#define SENTINEL_TLS_SCHEME "rediss+sentinel://"
#define SENTINEL_DEFAULT_PORT 26379
/* Sentinels in one URL: deployments run three or five. */
#define SENTINEL_HOSTS_MAX 8
/* Longest master name; Sentinel's own names are short identifiers. */
#define SENTINEL_NAME_MAX 128
/* Longest primary address a Sentinel may announce (an IPv6 literal is 45). */
#define SENTINEL_ADDR_MAX 63
/* How long one Sentinel has to connect and answer before the next is asked. */
#define SENTINEL_QUERY_TIMEOUT_MS 1000
/* After a round in which no Sentinel answered, the next round. */
#define SENTINEL_RETRY_MS 500
/* Re-checks asked for by failing connections: at most one round per this
 * interval, so that a primary that refuses every connect (it is down and
 * not yet replaced) costs a query per interval, not one per attempt. */
#define SENTINEL_RECHECK_MIN_MS 250
/* Rounds in a row whose only answers carry an older configuration epoch
 * than the newest seen before the floor is given up (Sentinels redeployed
 * or reset): ~10 s at SENTINEL_RETRY_MS plus the timeouts. */
#define SENTINEL_STALE_ROUNDS_MAX 10
/* Backoff of the connections to the Sentinels themselves. */
#define SENTINEL_BACKOFF_MAX_MS 1000

typedef struct sentinel_host {
  char *host; /* name or numeric address (IPv6 without brackets) */
  int port;
} sentinel_host;

typedef struct sentinel_url {
  sentinel_host hosts[SENTINEL_HOSTS_MAX];
  int nhosts;
  char *master;
  /* The primary's user, password and db as a redis:// URL has them (host
   * NULL); `masked` is this whole URL with the password as "***". */
  rconn_url primary;
  bool tls; /* rediss+sentinel://: every connection, Sentinels too, is TLS */
} sentinel_url;

/* True when `url` starts with redis+sentinel:// or rediss+sentinel:// (any case). */
bool sentinel_url_is(const char *url);
/* The user (NULL: none) and password (NULL: no AUTH) every Sentinel of the
 * process is asked with, before the first sentinel URL is used. The strings
 * are not copied: they must live as long as the process's Redis
 * connections (tickerd passes its configuration's). */
void sentinel_set_auth(const char *user, const char *password);
/* Parses a redis+sentinel:// or rediss+sentinel:// URL. Returns 0 or UV_EINVAL/UV_ENOMEM with
 * *err a static message. */
int sentinel_url_parse(const char *url, sentinel_url *out, const char **err);
void sentinel_url_free(sentinel_url *u);

typedef struct td_sentinel td_sentinel;

/* Attaches `c` to the process's target for `url` on `loop`, made (and
 * started) on the first attach, and fills `out` (host NULL: the address
 * comes from sentinel_primary before each connect). NULL on a bad URL or
 * OOM, *err then says why. */
td_sentinel *sentinel_attach(uv_loop_t *loop, const char *url, td_rconn *c, rconn_url *out, const char **err);
/* `c` is closed; the last detach closes the target. */
void sentinel_detach(td_sentinel *s, td_rconn *c);
/* The primary's address; false while none is known. */
bool sentinel_primary(const td_sentinel *s, const char **host, int *port);
/* A connection to the primary failed, dropped, or found a replica: ask the
 * Sentinels again (rate-limited). */
void sentinel_recheck(td_sentinel *s);
/* ROLE said the node is not a master: counted, then sentinel_recheck. */
void sentinel_stale_answer(td_sentinel *s);

typedef struct sentinel_stats {
  const char *master;
  const char *url;        /* masked */
  char primary[80];       /* "host:port", "" while unknown */
  uint64_t switches;      /* times the primary changed after the first answer */
  uint64_t queries;       /* get-master-addr-by-name (+ SENTINEL MASTER) sent */
  uint64_t query_failures;/* a Sentinel that timed out, failed or did not know the master */
  uint64_t switch_events; /* +switch-master messages for our master */
  uint64_t stale_answers; /* a node the Sentinels named answered ROLE with something else */
  uint64_t stale_configs; /* a Sentinel's answer with an older configuration epoch, passed over */
  uint64_t config_epoch;  /* the newest configuration epoch seen (floor for answers) */
  int nhosts;
  int ready;              /* Sentinels with a READY query connection */
  int subscribed;         /* Sentinels whose +switch-master subscription is confirmed */
} sentinel_stats;

/* The target of `url` on `loop`, NULL when nothing is attached to it. */
td_sentinel *sentinel_find(uv_loop_t *loop, const char *url);
void sentinel_get_stats(const td_sentinel *s, sentinel_stats *out);

#endif
