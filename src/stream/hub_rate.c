/* Interval groups for per-client rate (see hub_rate.h). */
#include "hub_rate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A symbol some of a group's clients want, and the newest message of it
 * that they have not been sent yet. */
typedef struct {
  uint32_t sym;
  uint32_t members[HUB_RATE_PHASES][HUB_TRANSPORTS];
  uint8_t owed;                   /* bit p: phase p has not been sent the message in data */
  bool listed;                    /* in the group's due list */
  uint64_t epoch, seq;
  char *data;                     /* grown to the largest message seen, reused */
  uint32_t len, cap;
  wsd_variant enc[HUB_TRANSPORTS]; /* data encoded, by the first phase that sent it */
  bool wild;                      /* data is a symbol a pattern matches: the group's pattern clients want it */
} rate_slot;

typedef struct {
  hub_rate *rate;
  uint8_t index;
  uv_timer_t timer;
  uint32_t interval_ms;
  uint32_t clients;
  bool ticking;                   /* inside on_tick: a leave must not free the group under it */
  uint32_t *slot_of;              /* by symbol id: slot index + 1; 0: no slot */
  rate_slot *slots;
  uint32_t nslots, slots_cap;
  uint32_t *due;                  /* indices of the slots that owe a phase their message */
  /* Clients with patterns (each once, whatever its number of patterns),
   * per phase and transport: a slot of a symbol a pattern matches is made
   * when its first quote arrives (hub_rate_offer), not per client. */
  uint32_t wild[HUB_RATE_PHASES][HUB_TRANSPORTS];
  uint32_t ndue;
  uint64_t ticks, frames_encoded, skipped;
} rate_group;

struct hub_rate {
  uv_loop_t *loop;
  uint32_t max_syms;
  hub_rate_encode_cb encode;
  hub_rate_flush_cb flush;
  void *ud;
  rate_group *groups[HUB_RATE_MAX_GROUPS + 1];   /* by index; 0 is "no group" */
  uint32_t (*throttled)[HUB_TRANSPORTS];         /* by symbol id, over every group */
  uint32_t wild_clients;                         /* throttled clients with patterns, over every group */
  hub_rate_stats stats;
};

hub_rate *hub_rate_new(uv_loop_t *loop, uint32_t max_syms, hub_rate_encode_cb encode, hub_rate_flush_cb flush,
                       void *ud) {
  hub_rate *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->throttled = calloc(max_syms, sizeof(*r->throttled));
  if (!r->throttled) {
    free(r);
    return NULL;
  }
  r->loop = loop;
  r->max_syms = max_syms;
  r->encode = encode;
  r->flush = flush;
  r->ud = ud;
  return r;
}

/* The slot's encoded message is stale or sent to every phase. */
static void slot_release(rate_slot *s) {
  for (int t = 0; t < HUB_TRANSPORTS; t++) wsd_variant_done(&s->enc[t]);
  memset(s->enc, 0, sizeof(s->enc));
}

static void group_free(rate_group *g) {
  for (uint32_t i = 0; i < g->nslots; i++) {
    slot_release(&g->slots[i]);
    free(g->slots[i].data);
  }
  free(g->slots);
  free(g->slot_of);
  free(g->due);
  free(g);
}

static void on_group_closed(uv_handle_t *t) { group_free(t->data); }

void hub_rate_free(hub_rate *r) {
  if (!r) return;
  /* A group still open had clients when the loop stopped running: its
   * timer never fires again. */
  for (int i = 1; i <= HUB_RATE_MAX_GROUPS; i++)
    if (r->groups[i]) group_free(r->groups[i]);
  free(r->throttled);
  free(r);
}

bool hub_rate_valid(int64_t ms) { return ms == 0 || (ms >= HUB_RATE_MIN_MS && ms <= HUB_RATE_MAX_MS); }

/* ---- the tick -------------------------------------------------------------- */

static void group_close(rate_group *g) {
  hub_rate *r = g->rate;
  r->groups[g->index] = NULL;
  r->stats.groups--;
  uv_close((uv_handle_t *)&g->timer, on_group_closed);
}

/* Sends the clients of one phase each message owed to them: encoded by
 * the first phase that needs it, then shared. The flush may close slow
 * clients, which leave their group from inside this loop: the group stays
 * until the loop is done. */
static void on_tick(uv_timer_t *t) {
  rate_group *g = t->data;
  hub_rate *r = g->rate;
  uint8_t phase = (uint8_t)(g->ticks++ % HUB_RATE_PHASES), bit = (uint8_t)(1u << phase);
  uint32_t kept = 0;
  g->ticking = true;
  for (uint32_t i = 0; i < g->ndue; i++) {
    rate_slot *s = &g->slots[g->due[i]];
    if (s->owed & bit) {
      s->owed &= (uint8_t)~bit;
      bool any = false;
      for (int k = 0; k < HUB_TRANSPORTS; k++) {
        if (!s->members[phase][k] && !(s->wild && g->wild[phase][k])) continue;
        any = true;
        if (s->enc[k].plain) continue;
        s->enc[k] = wsd_variant_of(r->encode(r->ud, s->sym, (hub_transport)k, s->epoch, s->seq, s->data, s->len));
        g->frames_encoded++;
        r->stats.frames_encoded++;
      }
      if (any) r->flush(r->ud, s->sym, g->index, phase, s->enc, s->seq);
    }
    if (s->owed) {
      g->due[kept++] = g->due[i];
    } else {
      s->listed = false;
      slot_release(s);
    }
  }
  g->ndue = kept;
  g->ticking = false;
  if (!g->clients) group_close(g);
}

/* ---- groups ---------------------------------------------------------------- */

int hub_rate_join(hub_rate *r, uint32_t ms) {
  int free_index = 0;
  for (int i = 1; i <= HUB_RATE_MAX_GROUPS; i++) {
    if (r->groups[i] && r->groups[i]->interval_ms == ms) {
      r->groups[i]->clients++;
      r->stats.clients++;
      return i;
    }
    if (!r->groups[i] && !free_index) free_index = i;
  }
  if (!free_index) return -ENOSPC;
  rate_group *g = calloc(1, sizeof(*g));
  if (!g || !(g->slot_of = calloc(r->max_syms, sizeof(*g->slot_of)))) {
    free(g);
    return -ENOMEM;
  }
  g->rate = r;
  g->index = (uint8_t)free_index;
  g->interval_ms = ms;
  g->clients = 1;
  uv_timer_init(r->loop, &g->timer);
  g->timer.data = g;
  /* Rounded up: HUB_RATE_PHASES ticks never take less than the interval. */
  uint64_t tick = (ms + HUB_RATE_PHASES - 1) / HUB_RATE_PHASES;
  uv_timer_start(&g->timer, on_tick, tick, tick);
  r->groups[free_index] = g;
  r->stats.groups++;
  r->stats.clients++;
  return free_index;
}

void hub_rate_leave(hub_rate *r, uint8_t g) {
  rate_group *grp = r->groups[g];
  if (!grp) return;
  r->stats.clients--;
  if (--grp->clients == 0 && !grp->ticking) group_close(grp);
}

uint32_t hub_rate_interval(const hub_rate *r, uint8_t g) { return r->groups[g] ? r->groups[g]->interval_ms : 0; }

/* The slot of `sym` in `g`, made when missing; NULL on OOM. */
static rate_slot *slot_for(rate_group *g, uint32_t sym) {
  if (g->slot_of[sym]) return &g->slots[g->slot_of[sym] - 1];
  if (g->nslots == g->slots_cap) {
    uint32_t cap = g->slots_cap ? g->slots_cap * 2 : 8;
    rate_slot *ns = realloc(g->slots, cap * sizeof(*ns));
    if (!ns) return NULL;
    g->slots = ns;
    uint32_t *nd = realloc(g->due, cap * sizeof(*nd));
    if (!nd) return NULL;
    g->due = nd;
    g->slots_cap = cap;
  }
  rate_slot *s = &g->slots[g->nslots];
  memset(s, 0, sizeof(*s));
  s->sym = sym;
  g->slot_of[sym] = ++g->nslots;
  return s;
}

uint8_t hub_rate_phase(uint64_t conn_id) { return (uint8_t)(conn_id % HUB_RATE_PHASES); }

int hub_rate_member(hub_rate *r, uint8_t g, uint32_t sym, hub_transport t, uint8_t phase, int delta) {
  rate_group *grp = r->groups[g];
  if (!grp || sym >= r->max_syms || phase >= HUB_RATE_PHASES) return -EINVAL;
  rate_slot *s = slot_for(grp, sym);
  if (!s) return -ENOMEM;
  s->members[phase][t] += (uint32_t)delta;
  r->throttled[sym][t] += (uint32_t)delta;
  return 0;
}

int hub_rate_wild(hub_rate *r, uint8_t g, hub_transport t, uint8_t phase, int delta) {
  rate_group *grp = r->groups[g];
  if (!grp || phase >= HUB_RATE_PHASES) return -EINVAL;
  grp->wild[phase][t] += (uint32_t)delta;
  r->wild_clients += (uint32_t)delta;
  return 0;
}

uint32_t hub_rate_throttled(const hub_rate *r, uint32_t sym, hub_transport t) {
  return sym < r->max_syms ? r->throttled[sym][t] : 0;
}

/* ---- messages -------------------------------------------------------------- */

void hub_rate_offer(hub_rate *r, uint32_t sym, bool wild, uint64_t epoch, uint64_t seq, const char *payload,
                    size_t len) {
  wild = wild && r->wild_clients;
  if (sym >= r->max_syms || (!r->throttled[sym][HUB_WS] && !r->throttled[sym][HUB_SSE] && !wild)) return;
  for (int i = 1; i <= HUB_RATE_MAX_GROUPS; i++) {
    rate_group *g = r->groups[i];
    if (!g) continue;
    uint8_t wild_phases = 0;
    for (int p = 0; wild && p < HUB_RATE_PHASES; p++)
      if (g->wild[p][HUB_WS] || g->wild[p][HUB_SSE]) wild_phases |= (uint8_t)(1u << p);
    /* A pattern's symbol gets its slot with its first quote: at most one
     * per symbol id per group (slot_of is sized by the symbol table). */
    rate_slot *s = g->slot_of[sym] ? &g->slots[g->slot_of[sym] - 1] : wild_phases ? slot_for(g, sym) : NULL;
    if (!s) continue;
    uint8_t wanted = wild_phases;
    for (int p = 0; p < HUB_RATE_PHASES; p++)
      if (s->members[p][HUB_WS] || s->members[p][HUB_SSE]) wanted |= (uint8_t)(1u << p);
    if (!wanted) continue;
    if (len > s->cap) {
      char *nd = realloc(s->data, len);
      if (!nd) continue;   /* out of memory: the slot keeps the older message */
      s->data = nd;
      s->cap = (uint32_t)len;
    }
    /* the message it held is never sent to the phases still owed it: one
     * update skipped per client of those */
    for (int p = 0; p < HUB_RATE_PHASES; p++) {
      if (!(s->owed & (1u << p))) continue;
      for (int t = 0; t < HUB_TRANSPORTS; t++) r->stats.skipped[t] += s->members[p][t];
      g->skipped += (uint64_t)s->members[p][HUB_WS] + s->members[p][HUB_SSE];
    }
    slot_release(s);
    s->owed = wanted;
    s->wild = wild_phases != 0;
    if (!s->listed) {
      s->listed = true;
      g->due[g->ndue++] = (uint32_t)(s - g->slots);
    }
    memcpy(s->data, payload, len);
    s->len = (uint32_t)len;
    s->epoch = epoch;
    s->seq = seq;
  }
}

/* ---- counters -------------------------------------------------------------- */

void hub_rate_get_stats(const hub_rate *r, hub_rate_stats *out) { *out = r->stats; }

void hub_rate_write_groups(const hub_rate *r, jsonw *w, const char *key) {
  jw_array(w, key);
  for (int i = 1; i <= HUB_RATE_MAX_GROUPS; i++) {
    const rate_group *g = r->groups[i];
    if (!g) continue;
    jw_object(w, NULL);
    jw_u64(w, "interval_ms", g->interval_ms);
    jw_u64(w, "clients", g->clients);
    jw_u64(w, "symbols", g->nslots);
    jw_u64(w, "ticks", g->ticks);
    jw_u64(w, "frames_encoded", g->frames_encoded);
    jw_u64(w, "skipped", g->skipped);
    jw_end(w);
  }
  jw_end(w);
}
