/* Wildcard subscriptions: a client's patterns, "*" (every symbol) or a
 * symbol prefix followed by "*" ("BRK.*"), and the process's one Redis
 * PSUBSCRIBE per pattern (reference counted: the first client of a pattern
 * subscribes, the last one leaving unsubscribes).
 *
 * The hub asks which patterns match a quote's symbol (wild_match) and
 * hands each of their clients to its one delivery point (wild_each calls
 * back), so a pattern's quotes meet the same output limits, conflation and
 * resume holds as a named symbol's. A client gets each message once: not
 * through a pattern when it named the symbol itself (that subscription
 * delivers it), and through one of its patterns only when several match. */
#ifndef TD_HUB_WILD_H
#define TD_HUB_WILD_H

#include <stddef.h>
#include <stdint.h>

#include "base/jsonw.h"
#include "stream/hub.h"

struct td_subscriber;
typedef struct hub_wild hub_wild;

/* Whether `s` is a pattern: 1 (the prefix before '*' is s[0..*plen)), 0 a
 * plain name, -EINVAL a '*' anywhere but last, or a prefix that is not the
 * start of a valid symbol (1-15 of A-Z 0-9 . - /). */
int wild_parse(const char *s, size_t n, size_t *plen);

hub_wild *wild_new(const char *channel_prefix);
void wild_free(hub_wild *w);
void wild_set_subscriber(hub_wild *w, struct td_subscriber *sub);

/* 1 subscribed now, 0 already, -E2BIG the client has HUB_MAX_CLIENT_PATTERNS,
 * -ENOSPC the process has HUB_MAX_PATTERNS (or Redis refused one more),
 * -ENOMEM. */
int wild_add(hub_wild *w, hub_client *c, const char *prefix, size_t plen);
/* 0 not subscribed, 1 unsubscribed, 2 unsubscribed and the pattern has no
 * client left (its symbols may have lost their last listener). */
int wild_remove(hub_wild *w, hub_client *c, const char *prefix, size_t plen);
/* Drops every pattern of `c`; true when one of them lost its last client. */
bool wild_detach(hub_wild *w, hub_client *c);

/* The patterns with clients that match symbol `sym`: their indexes in
 * `out` (HUB_MAX_PATTERNS of room), how many, and their clients per
 * transport added to `clients` (may count a client twice). */
uint32_t wild_match(const hub_wild *w, const char *sym, size_t n, uint8_t *out, uint32_t clients[HUB_TRANSPORTS]);
/* Calls fn once for each client of the `np` patterns of wild_match that
 * has no subscription of its own to `sym_id`. fn may close the client
 * (it is then detached behind the walk). */
void wild_each(hub_wild *w, const uint8_t *pats, uint32_t np, uint32_t sym_id, void (*fn)(void *arg, hub_client *c),
               void *arg);

/* The prefix of the client's k-th pattern (k < c->nwild); its length in *plen. */
const char *wild_client_prefix(const hub_wild *w, const hub_client *c, uint32_t k, size_t *plen);
/* Appends the client's patterns, as given ("BRK.*"), to the open array. */
void wild_write_client(const hub_wild *w, const hub_client *c, jsonw *jw);
/* Patterns with clients, and client subscriptions to patterns. */
void wild_counts(const hub_wild *w, uint64_t *patterns, uint64_t *subscriptions);

#endif
