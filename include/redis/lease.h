/* lease: one holder at a time across processes that share a Redis, for
 * work that must run once per fleet (the upstream feed).
 *
 * The lease is one key whose value is the holder's instance id and whose
 * TTL the holder keeps refreshing:
 *
 *   acquire  SET <key> <id> NX PX <ttl>
 *   probe    EVAL: PEXPIRE <key> <ttl> if GET <key> == <id>; return {holder, PTTL}
 *   release  EVAL: DEL <key> if GET <key> == <id>
 *
 * Every round sends the acquire and the probe pipelined on the lease's own
 * connection (so that a backlog of PUBLISH commands never delays a renew):
 * the probe's answer says who holds the key and for how long. A holder
 * renews every renew_ms; a standby tries again after the holder's PTTL runs
 * out (at most renew_ms later), so a dead holder is replaced within the TTL
 * and one round trip.
 *
 * States (lease_state):
 *
 *   IDLE -> CONNECTING -(ready)-> ACQUIRING -(probe: ours)----> HELD
 *                                     |   \-(probe: other's)-> STANDBY
 *   HELD/STANDBY -(timer)-> ACQUIRING again;  connection lost -> CONNECTING
 *   lease_close(): [RELEASING] -> CLOSING -> CLOSED (done callback)
 *
 * Being the holder is not a state but a deadline: a successful probe makes
 * the lease ours until (time the probe was SENT) + ttl - margin, where the
 * margin (LEASE_MARGIN_PCT of the ttl) covers clock-rate differences and
 * the time a quote spends between the check and the socket. The server
 * cannot have expired the key before that instant, since it set the TTL no
 * earlier than we sent. lease_held() compares against the monotonic clock
 * itself, not a loop-cached time, so a process that was paused (SIGSTOP, a
 * stalled disk) stops publishing the moment it resumes. A timer fires the
 * role callback at the deadline when no renew came back in time. */
#ifndef TD_LEASE_H
#define TD_LEASE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "redis/redis_conn.h"

/* Instance ids: 64 random bits in hex, drawn once per process start. */
#define LEASE_ID_LEN 16
/* Longest lease key; keys are config values ("tickerd:lease:alpaca"). */
#define LEASE_KEY_MAX 256
/* Share of the TTL kept back from the deadline (see above). */
#define LEASE_MARGIN_PCT 10
/* Bounds of the configurable times. A TTL under 100 ms would leave a
 * holder no room for one round trip plus the margin. */
#define LEASE_TTL_MIN_MS 100
#define LEASE_TTL_MAX_MS 600000
#define LEASE_RENEW_MIN_MS 10
/* A standby retries this long after the holder's PTTL has run out, so that
 * its SET arrives after the key expired, not just before. */
#define LEASE_EXPIRY_SLACK_MS 5
/* How long lease_close() waits for the release's reply before closing. */
#define LEASE_RELEASE_TIMEOUT_MS 1000

typedef enum lease_state {
  LEASE_IDLE,
  LEASE_CONNECTING, /* waiting for the Redis connection */
  LEASE_ACQUIRING,  /* a round (SET NX PX + probe) is out */
  LEASE_HELD,       /* ours; the next round renews it */
  LEASE_STANDBY,    /* another instance's; the next round tries again */
  LEASE_RELEASING,  /* lease_close(): the release is out */
  LEASE_CLOSING,
  LEASE_CLOSED
} lease_state;

typedef struct td_lease td_lease;

/* The role changed: holder (the deadline lies ahead) or not. Called from
 * the loop, never from inside lease_held(). */
typedef void (*lease_role_cb)(td_lease *l, bool holder, void *ud);

typedef struct lease_options {
  const char *key;       /* the Redis key */
  uint32_t ttl_ms;
  uint32_t renew_ms;     /* must leave the margin: renew_ms < ttl - margin */
  rconn_options conn;    /* zero fields: the td_limits.h defaults */
} lease_options;

typedef struct lease_stats {
  lease_state state;
  bool holder;
  char id[LEASE_ID_LEN + 1];
  char holder_id[LEASE_ID_LEN + 1]; /* the last holder seen; "" none or not one of ours */
  int64_t holder_pttl_ms;           /* its PTTL at the last probe (-2: no key) */
  uint64_t rounds;                  /* acquire/renew rounds sent */
  uint64_t acquired;                /* times this instance became the holder */
  uint64_t takeovers;               /* of which after another instance had held it */
  uint64_t lost;                    /* times it stopped being the holder, release excluded */
  uint64_t renew_failures;          /* rounds while holder that got no usable answer */
  uint64_t expired_unrenewed;       /* deadlines passed without a renew */
} lease_stats;

/* A random instance id (hex, LEASE_ID_LEN chars). */
void lease_make_id(char out[LEASE_ID_LEN + 1]);
/* Checks the options: NULL (with *err) if they cannot work. */
const char *lease_check_options(const lease_options *o);
/* NULL on a bad URL or options (logged, *err set) or OOM. Does not connect. */
td_lease *lease_new(uv_loop_t *loop, const char *redis_url, const char *id, const lease_options *opt,
                    lease_role_cb on_role, void *ud, const char **err);
void lease_start(td_lease *l);
/* True while the lease is ours: the check at the publish path. */
bool lease_held(const td_lease *l);
void lease_get_stats(const td_lease *l, lease_stats *out);
const char *lease_state_name(lease_state s);
/* Gives the lease up (DEL if still ours, waiting at most
 * LEASE_RELEASE_TIMEOUT_MS), closes the connection, frees `l`, then
 * done(ud). The role callback is not called again. */
void lease_close(td_lease *l, void (*done)(void *ud), void *ud);

#endif
