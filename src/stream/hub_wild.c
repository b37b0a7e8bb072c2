/* Wildcard subscriptions (see hub_wild.h). */
#include "hub_wild.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "market/stream_msg.h"
#include "market/subscriber.h"

/* "quotes:" + prefix + "*" */
#define WILD_REDIS_MAX (TD_CHANNEL_PREFIX_MAX + 1 + TD_SYMBOL_MAX + 1)

/* One pattern of the process and its clients, one array per transport
 * (as a symbol's, hub.c). A slot with no client is free. */
typedef struct {
  char prefix[TD_SYMBOL_MAX];
  uint8_t plen;
  char redis[WILD_REDIS_MAX + 1];
  hub_client **clients[HUB_TRANSPORTS];
  uint32_t n[HUB_TRANSPORTS], cap[HUB_TRANSPORTS];
} wild_pat;

/* A client's pattern: the slot, and where the client sits in its array. */
typedef struct hub_wild_sub {
  uint8_t pat;
  uint32_t pos;
} hub_wild_sub;

struct hub_wild {
  const char *channel_prefix;
  td_subscriber *sub;
  wild_pat pats[HUB_MAX_PATTERNS];
  uint32_t npats;                 /* slots in use, or once used: [0, npats) */
  uint64_t subscriptions;
  uint64_t stamp;                 /* one per wild_each walk */
};

static uint32_t pat_clients(const wild_pat *p) { return p->n[HUB_WS] + p->n[HUB_SSE]; }

int wild_parse(const char *s, size_t n, size_t *plen) {
  const char *star = memchr(s, '*', n);
  if (!star) return 0;
  size_t k = (size_t)(star - s);
  /* A symbol is at most TD_SYMBOL_MAX: a longer prefix matches nothing. */
  if (k != n - 1 || k >= TD_SYMBOL_MAX || (k > 0 && !smsg_symbol_valid(s, k))) return -EINVAL;
  *plen = k;
  return 1;
}

hub_wild *wild_new(const char *channel_prefix) {
  hub_wild *w = calloc(1, sizeof(*w));
  if (w) w->channel_prefix = channel_prefix;
  return w;
}

void wild_free(hub_wild *w) {
  if (!w) return;
  for (uint32_t i = 0; i < w->npats; i++)
    for (int t = 0; t < HUB_TRANSPORTS; t++) free(w->pats[i].clients[t]);
  free(w);
}

void wild_set_subscriber(hub_wild *w, td_subscriber *sub) { w->sub = sub; }

static int find_pat(const hub_wild *w, const char *prefix, size_t plen) {
  for (uint32_t i = 0; i < w->npats; i++) {
    const wild_pat *p = &w->pats[i];
    if (pat_clients(p) && p->plen == plen && !memcmp(p->prefix, prefix, plen)) return (int)i;
  }
  return -1;
}

/* A free slot made into pattern `prefix`*, PSUBSCRIBEd; -1 when none is
 * left or the subscriber refuses it. */
static int open_pat(hub_wild *w, const char *prefix, size_t plen) {
  uint32_t i = 0;
  while (i < w->npats && pat_clients(&w->pats[i])) i++;
  if (i == HUB_MAX_PATTERNS) return -1;
  wild_pat *p = &w->pats[i];
  memcpy(p->prefix, prefix, plen);
  p->plen = (uint8_t)plen;
  snprintf(p->redis, sizeof(p->redis), "%s:%.*s*", w->channel_prefix, (int)plen, prefix);
  if (w->sub && sub_padd(w->sub, p->redis) < 0) return -1;
  if (i == w->npats) w->npats++;
  return (int)i;
}

static int client_pat_index(const hub_client *c, int pat) {
  for (uint32_t k = 0; k < c->nwild; k++)
    if (c->wild[k].pat == pat) return (int)k;
  return -1;
}

int wild_add(hub_wild *w, hub_client *c, const char *prefix, size_t plen) {
  int i = find_pat(w, prefix, plen);
  if (i >= 0 && client_pat_index(c, i) >= 0) return 0;
  if (c->nwild >= HUB_MAX_CLIENT_PATTERNS) return -E2BIG;
  if (!c->wild && !(c->wild = calloc(HUB_MAX_CLIENT_PATTERNS, sizeof(*c->wild)))) return -ENOMEM;
  bool opened = i < 0;
  if (opened && (i = open_pat(w, prefix, plen)) < 0) return -ENOSPC;
  wild_pat *p = &w->pats[i];
  hub_transport t = c->transport;
  if (p->n[t] == p->cap[t]) {
    uint32_t cap = p->cap[t] ? p->cap[t] * 2 : 4;
    hub_client **nc = realloc(p->clients[t], cap * sizeof(*nc));
    if (!nc) {
      if (opened && w->sub) sub_premove(w->sub, p->redis);
      return -ENOMEM;
    }
    p->clients[t] = nc;
    p->cap[t] = cap;
  }
  c->wild[c->nwild++] = (hub_wild_sub){(uint8_t)i, p->n[t]};
  p->clients[t][p->n[t]++] = c;
  w->subscriptions++;
  return 1;
}

/* Removes the client's pattern k (swap-remove on both sides); true when the
 * pattern has no client left, and is then PUNSUBSCRIBEd. */
static bool drop_pat(hub_wild *w, hub_client *c, uint32_t k) {
  hub_wild_sub s = c->wild[k];
  wild_pat *p = &w->pats[s.pat];
  hub_transport t = c->transport;
  hub_client *moved = p->clients[t][--p->n[t]];
  p->clients[t][s.pos] = moved;
  if (moved != c) moved->wild[client_pat_index(moved, s.pat)].pos = s.pos;
  c->wild[k] = c->wild[--c->nwild];
  w->subscriptions--;
  if (pat_clients(p)) return false;
  if (w->sub) sub_premove(w->sub, p->redis);
  return true;
}

int wild_remove(hub_wild *w, hub_client *c, const char *prefix, size_t plen) {
  int i = find_pat(w, prefix, plen), k = i >= 0 ? client_pat_index(c, i) : -1;
  if (k < 0) return 0;
  return drop_pat(w, c, (uint32_t)k) ? 2 : 1;
}

bool wild_detach(hub_wild *w, hub_client *c) {
  bool emptied = false;
  while (c->nwild) emptied |= drop_pat(w, c, c->nwild - 1);
  free(c->wild);
  c->wild = NULL;
  return emptied;
}

uint32_t wild_match(const hub_wild *w, const char *sym, size_t n, uint8_t *out, uint32_t clients[HUB_TRANSPORTS]) {
  uint32_t np = 0;
  for (uint32_t i = 0; i < w->npats; i++) {
    const wild_pat *p = &w->pats[i];
    if (!pat_clients(p) || n < p->plen || memcmp(sym, p->prefix, p->plen)) continue;
    out[np++] = (uint8_t)i;
    for (int t = 0; t < HUB_TRANSPORTS; t++) clients[t] += p->n[t];
  }
  return np;
}

static bool names_symbol(const hub_client *c, uint32_t sym_id) {
  for (uint32_t k = 0; k < c->nsubs; k++)
    if (c->subs[k].sym == sym_id) return true;
  return false;
}

void wild_each(hub_wild *w, const uint8_t *pats, uint32_t np, uint32_t sym_id, void (*fn)(void *arg, hub_client *c),
               void *arg) {
  uint64_t stamp = ++w->stamp;
  for (uint32_t j = 0; j < np; j++) {
    wild_pat *p = &w->pats[pats[j]];
    for (int t = 0; t < HUB_TRANSPORTS; t++)
      /* backwards: a client closed by fn is swap-removed behind us */
      for (uint32_t i = p->n[t]; i-- > 0;) {
        hub_client *c = p->clients[t][i];
        /* The symbol's own subscription delivers it; of several matching
         * patterns, the first. */
        if (c->wild_stamp == stamp || (c->nsubs && names_symbol(c, sym_id))) continue;
        c->wild_stamp = stamp;
        fn(arg, c);
      }
  }
}

const char *wild_client_prefix(const hub_wild *w, const hub_client *c, uint32_t k, size_t *plen) {
  const wild_pat *p = &w->pats[c->wild[k].pat];
  *plen = p->plen;
  return p->prefix;
}

void wild_write_client(const hub_wild *w, const hub_client *c, jsonw *jw) {
  for (uint32_t k = 0; k < c->nwild; k++) {
    const wild_pat *p = &w->pats[c->wild[k].pat];
    char name[TD_SYMBOL_MAX + 1];
    memcpy(name, p->prefix, p->plen);
    name[p->plen] = '*';
    jw_strn(jw, NULL, name, (size_t)p->plen + 1);
  }
}

void wild_counts(const hub_wild *w, uint64_t *patterns, uint64_t *subscriptions) {
  *patterns = 0;
  for (uint32_t i = 0; i < w->npats; i++) *patterns += pat_clients(&w->pats[i]) > 0;
  *subscriptions = w->subscriptions;
}
