/* Interval groups for per-client rate (private to the hub; see
 * hub_set_interval in stream/hub.h).
 *
 * The clients with one interval form a group: one repeating timer, and per
 * symbol a slot with the newest message not yet sent and how many of the
 * group's clients (per transport) want the symbol. The hub offers every
 * message of a symbol that throttled clients want (hub_rate_offer): it
 * replaces the slot's message, and the update the slot held is counted as
 * skipped for each of those clients. On the group's tick each slot holding
 * a message is handed to the hub's flush callback once: the hub encodes it
 * once per transport and queues the same bytes on the group's clients of
 * that symbol. A client therefore gets at most one update per symbol per
 * tick, the newest, at most one interval after it arrived (trailing edge).
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
#include "stream/hub.h"

typedef struct hub_rate hub_rate;

/* A group's newest message of `sym` is due for its `members` (per
 * transport, counted when the tick started). */
typedef void (*hub_rate_flush_cb)(void *ud, uint32_t sym, uint8_t group, const uint32_t members[HUB_TRANSPORTS],
                                  uint64_t epoch, uint64_t seq, const char *payload, size_t len);

typedef struct {
  uint64_t skipped[HUB_TRANSPORTS];
  uint64_t frames_encoded;
  uint64_t clients, groups;
} hub_rate_stats;

/* Symbol ids are below `max_syms`. NULL on OOM. */
hub_rate *hub_rate_new(uv_loop_t *loop, uint32_t max_syms, hub_rate_flush_cb flush, void *ud);
/* After the loop ran to its end (every group's timer closed). */
void hub_rate_free(hub_rate *r);

bool hub_rate_valid(int64_t ms);
/* A client joins the group of `ms` (made when new): its index
 * (1..HUB_RATE_MAX_GROUPS), -ENOSPC or -ENOMEM. */
int hub_rate_join(hub_rate *r, uint32_t ms);
/* A client leaves group `g`; the last one closes it. */
void hub_rate_leave(hub_rate *r, uint8_t g);
uint32_t hub_rate_interval(const hub_rate *r, uint8_t g);
/* `delta` clients of group `g` on transport `t` want symbol `sym` now.
 * 0 on success, -ENOMEM (only when delta > 0). */
int hub_rate_member(hub_rate *r, uint8_t g, uint32_t sym, hub_transport t, int delta);
/* Clients of `sym` on transport `t` that some group counts, over every group. */
uint32_t hub_rate_throttled(const hub_rate *r, uint32_t sym, hub_transport t);
/* The newest message of `sym`: kept for each group that wants it (a
 * quick no when none does). */
void hub_rate_offer(hub_rate *r, uint32_t sym, uint64_t epoch, uint64_t seq, const char *payload, size_t len);

void hub_rate_get_stats(const hub_rate *r, hub_rate_stats *out);
void hub_rate_write_groups(const hub_rate *r, jsonw *w, const char *key);

#endif
