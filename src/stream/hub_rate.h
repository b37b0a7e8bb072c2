/* Interval groups for per-client rate (private to the hub; see
 * hub_set_interval in stream/hub.h).
 *
 * The clients with one interval form a group: one repeating timer, and per
 * symbol a slot with the newest message not yet sent and how many of the
 * group's clients (per phase and transport) want the symbol. The hub offers
 * every message of a symbol that throttled clients want (hub_rate_offer):
 * it replaces the slot's message, and the update the slot held is counted
 * as skipped for each client that had not been sent it yet.
 *
 * A group's clients are spread over HUB_RATE_PHASES phases (by connection):
 * the timer ticks HUB_RATE_PHASES times per interval and each tick serves
 * one phase, so 10,000 clients of one interval are four bursts of 2,500
 * writes, not one of 10,000 that the last clients wait through. A client
 * is served only on its phase's tick, once per interval (rounded up to a
 * multiple of HUB_RATE_PHASES ms): at most one update per symbol per
 * interval, the newest, at most one interval after it arrived (trailing
 * edge). A slot's message is encoded once per transport, by the first
 * phase that sends it (the encode callback), and the same bytes serve the
 * other phases (the flush callback queues them on that phase's clients).
 *
 * Delivery is keyed by (group, symbol id): whoever tells the group about
 * its members of a symbol (hub_rate_member) gets that symbol's flushes;
 * the hub's own count of whom it holds back from live delivery is its own
 * (hub_symbol.throttled), so another kind of subscription (a wildcard
 * client that registers each symbol it matches) can join a group too. */
#ifndef TD_HUB_RATE_H
#define TD_HUB_RATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/jsonw.h"
#include "http/ws_deflate.h"
#include "stream/hub.h"

#define HUB_RATE_PHASES 4

typedef struct hub_rate hub_rate;

/* The message of `sym` as transport `t` sends it (NULL on OOM). */
typedef td_buf *(*hub_rate_encode_cb)(void *ud, uint32_t sym, hub_transport t, uint64_t epoch, uint64_t seq,
                                      const char *payload, size_t len);
/* A group's newest message of `sym`, encoded (a transport with no client
 * in this phase may have no bytes), is due for the clients of `phase`. */
typedef void (*hub_rate_flush_cb)(void *ud, uint32_t sym, uint8_t group, uint8_t phase,
                                  wsd_variant bufs[HUB_TRANSPORTS], uint64_t seq);

typedef struct {
  uint64_t skipped[HUB_TRANSPORTS];
  uint64_t frames_encoded;
  uint64_t clients, groups;
} hub_rate_stats;

/* Symbol ids are below `max_syms`. NULL on OOM. */
hub_rate *hub_rate_new(uv_loop_t *loop, uint32_t max_syms, hub_rate_encode_cb encode, hub_rate_flush_cb flush,
                       void *ud);
/* After the loop ran to its end (every group's timer closed). */
void hub_rate_free(hub_rate *r);

bool hub_rate_valid(int64_t ms);
/* A client joins the group of `ms` (made when new): its index
 * (1..HUB_RATE_MAX_GROUPS), -ENOSPC or -ENOMEM. */
int hub_rate_join(hub_rate *r, uint32_t ms);
/* A client leaves group `g`; the last one closes it. */
void hub_rate_leave(hub_rate *r, uint8_t g);
uint32_t hub_rate_interval(const hub_rate *r, uint8_t g);
/* The phase of a client, from its connection's id. */
uint8_t hub_rate_phase(uint64_t conn_id);
/* `delta` clients of group `g` in `phase` on transport `t` want symbol
 * `sym` now (delta 0: only make the slot). 0 on success, -ENOMEM. */
int hub_rate_member(hub_rate *r, uint8_t g, uint32_t sym, hub_transport t, uint8_t phase, int delta);
/* `delta` clients of group `g` in `phase` on transport `t` have patterns
 * (count each client once): they want, on their tick, the newest message
 * of each symbol offered with `wild`. 0, or -EINVAL. */
int hub_rate_wild(hub_rate *r, uint8_t g, hub_transport t, uint8_t phase, int delta);
/* Clients of `sym` on transport `t` that some group counts, over every group. */
uint32_t hub_rate_throttled(const hub_rate *r, uint32_t sym, hub_transport t);
/* The newest message of `sym`: kept for each group that wants it (a
 * quick no when none does); `wild`: a pattern with clients matches it. */
void hub_rate_offer(hub_rate *r, uint32_t sym, bool wild, uint64_t epoch, uint64_t seq, const char *payload, size_t len);

void hub_rate_get_stats(const hub_rate *r, hub_rate_stats *out);
void hub_rate_write_groups(const hub_rate *r, jsonw *w, const char *key);

#endif
