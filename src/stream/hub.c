/* In-process fan-out (see hub.h). */
#include "stream/hub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonw.h"
#include "base/log.h"
#include "market/history_redis.h"
#include "market/quote_store.h"
#include "market/stream_msg.h"
#include "market/subscriber.h"
#include "market/symtab.h"
#include "base/td_limits.h"
#include "http/http_stats.h"
#include "http/ws_deflate.h"
#include "http/ws_frame.h"
#include "stream/candle_fan.h"
#include "hub_wild.h"
#include "hub_rate.h"

/* "quotes:" + symbol, with room for a long configured prefix. */
#define HUB_CHANNEL_MAX (TD_CHANNEL_PREFIX_MAX + 1 + TD_SYMBOL_MAX + 1)
/* "SYMBOL:<16 hex>:<20 digits>" */
#define HUB_POSITION_MAX (TD_SYMBOL_MAX + 1 + SMSG_EPOCH_LEN + 1 + 20 + 1)
/* Refused Redis messages are logged at most once per this many ms (the
 * rest counted in the next line's "suppressed"): another producer's bad
 * messages must not flood the log. */
#define HUB_BAD_LOG_MS 1000
/* Malformed messages (not one JSON object) are logged at most once per
 * channel per this many ms: a broken producer repeats its mistake with
 * every message, and one line a minute per channel says so. */
#define HUB_MALFORMED_LOG_MS 60000
/* The largest message without a position that is streamed and stored: a
 * quote is a few hundred bytes, and each symbol keeps --history-size of
 * them. Larger ones are refused as malformed. */
#define HUB_UNPOSITIONED_MAX (64 * 1024)
/* The envelope around a payload in a WebSocket quote message. */
#define HUB_ENVELOPE_MAX (64 + HUB_CHANNEL_MAX + TD_SYMBOL_MAX + HUB_POSITION_MAX)

/* A client of a symbol, with its connection: queueing a quote reads this
 * and the connection's first cache line, not the session. */
typedef struct {
  hub_client *client;
  td_conn *conn;
  uint8_t deflate_bits;  /* the client's, copied: deliver() must not touch the session */
  uint8_t group;         /* the client's interval group (hub_rate.c); 0: every quote */
  uint8_t phase;         /* which of the group's ticks serves the client (hub_rate_phase) */
} hub_member;

/* A log line allowed once per interval; what comes in between is counted
 * and reported by the next line. */
typedef struct {
  uint64_t logged_ms;    /* loop ms of the last line; 0: never */
  uint64_t suppressed;   /* since then, not logged */
} hub_log_limit;

typedef struct {
  const char *symbol;              /* the symbol table's name */
  char channel[HUB_CHANNEL_MAX];
  uint32_t id;                     /* the symbol's id: index and conflation tag (id + 1) */
  /* One array per transport (indexed by hub_transport): each is sent the
   * one encoding of a message that its transport needs. */
  hub_member *members[HUB_TRANSPORTS];
  uint32_t n[HUB_TRANSPORTS], cap[HUB_TRANSPORTS];
  uint64_t last_epoch, last_seq;   /* the last position received from Redis */
  bool check_continuity;           /* after a resubscribe: tell clients whether anything was lost */
  hub_log_limit malformed_log;     /* this channel's malformed messages */
  uint32_t resuming;               /* clients waiting for a replay from Redis (hub_resume) */
  uint32_t throttled[HUB_TRANSPORTS]; /* members in an interval group: fan_out skips them */
} hub_symbol;

/* A resume from the Redis stream in flight: its client gets no live quote
 * of `sym` until the replay went out (it would come before the replay).
 * After the replay it stays held until the live messages pass `until`, the
 * last position replayed: the stream read can answer before the
 * subscriber connection delivers a message the read already held, which
 * the client must not get twice. */
typedef struct hub_resume {
  td_hub *hub;
  hub_client *client;              /* NULL once the client left */
  uint32_t sym;
  uint64_t epoch, seq;
  uint64_t until;                  /* 0: the read is in flight */
  struct hub_resume *next;
  size_t since_len;
  char since[];
} hub_resume;

struct td_hub {
  td_hub_opts opts;
  qstore *store;
  td_subscriber *sub;
  const symtab *syms;               /* the store's */
  hub_symbol **by_id;               /* by symbol id, made when first subscribed; symtab_max of them */
  uint32_t *made;                   /* ids with a hub_symbol, in the order made */
  uint32_t nmade;
  uint32_t introduced;               /* ids this hub added to the table (HUB_MAX_INTRODUCED_SYMBOLS) */
  hub_client *clients;              /* every attached client */
  const char *topic_names[HUB_MAX_TOPICS];
  uint32_t topic_listeners[HUB_MAX_TOPICS];
  int ntopics;
  hub_stats stats;
  hub_log_limit refused_log;        /* refused messages of every channel, but malformed ones */
  hr_reader *history;               /* NULL: memory only */
  hub_resume *resumes;
  struct candle_fan *candles;       /* bar subscriptions (NULL: none) */
  hub_wild *wild;                   /* patterns ("*", "BRK.*") and their clients */
  hub_rate *rate;                   /* interval groups of throttled clients */
  uint64_t overload_conflated_at;   /* http_stats.stream_overload_conflated when this overload began */
  uint64_t last_behind_ms;          /* loop time the subscriber was last seen overload_behind_ms behind */
  uint64_t ingest_checked_ms;       /* loop time check_ingest last asked the subscriber */
};

/* ---- symbols ---------------------------------------------------------------- */

static uint32_t sym_clients(const hub_symbol *sym) { return sym->n[HUB_WS] + sym->n[HUB_SSE]; }

/* Whether anyone gets the symbol's quotes: its own clients, or a pattern's. */
static bool sym_listened(const td_hub *h, const hub_symbol *sym) {
  uint8_t pats[HUB_MAX_PATTERNS];
  uint32_t n[HUB_TRANSPORTS] = {0};
  return sym_clients(sym) > 0 || wild_match(h->wild, sym->symbol, symtab_len(h->syms, sym->id), pats, n) > 0;
}

static hub_symbol *find_symbol(const td_hub *h, const char *s, size_t n) {
  uint32_t id = symtab_find(h->syms, s, n);
  return id == SYMTAB_NONE ? NULL : h->by_id[id];
}

/* The hub's state of a symbol, made on its first subscription. Symbols are
 * never removed: at most the symbol table's limit exist, each small. NULL
 * with *err -ENOSPC (the table is full) or -ENOMEM. */
static hub_symbol *intern_symbol(td_hub *h, const char *s, size_t n, int *err) {
  uint32_t id, before = symtab_count(h->syms);
  if ((*err = symtab_intern(qstore_symtab(h->store), s, n, &id)) < 0) return NULL;
  if (symtab_count(h->syms) > before) h->introduced++;
  if (h->by_id[id]) return h->by_id[id];
  hub_symbol *sym = calloc(1, sizeof(*sym));
  if (!sym) {
    *err = -ENOMEM;
    return NULL;
  }
  sym->symbol = symtab_name(h->syms, id);
  snprintf(sym->channel, sizeof(sym->channel), "%s:%s", h->opts.channel_prefix, sym->symbol);
  sym->id = id;
  h->by_id[id] = sym;
  h->made[h->nmade++] = id;
  return sym;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static td_buf *rate_encode(void *ud, uint32_t id, hub_transport t, uint64_t epoch, uint64_t seq, const char *payload,
                           size_t len);
static void rate_flush(void *ud, uint32_t id, uint8_t group, uint8_t phase, wsd_variant bufs[HUB_TRANSPORTS],
                       uint64_t seq);

td_hub *hub_new(const td_hub_opts *opts, qstore *store) {
  td_hub *h = calloc(1, sizeof(*h));
  if (!h) return NULL;
  h->opts = *opts;
  if (h->opts.overload_behind_ms <= 0) h->opts.overload_behind_ms = HUB_BEHIND_MS;
  h->store = store;
  h->syms = qstore_symtab(store);
  h->by_id = calloc(symtab_max(h->syms), sizeof(*h->by_id));
  h->made = calloc(symtab_max(h->syms), sizeof(*h->made));
  h->wild = wild_new(h->opts.channel_prefix);
  h->rate = hub_rate_new(opts->loop, symtab_max(h->syms), rate_encode, rate_flush, h);
  if (!h->by_id || !h->made || !h->wild || !h->rate) {
    hub_free(h);
    return NULL;
  }
  return h;
}

void hub_set_subscriber(td_hub *h, td_subscriber *sub) {
  h->sub = sub;
  wild_set_subscriber(h->wild, sub);
}

const td_hub_opts *hub_opts(const td_hub *h) { return &h->opts; }

void hub_free(td_hub *h) {
  if (!h) return;
  for (uint32_t i = 0; i < h->nmade; i++) {
    hub_symbol *sym = h->by_id[h->made[i]];
    free(sym->members[HUB_WS]);
    free(sym->members[HUB_SSE]);
    free(sym);
  }
  /* Holds after a replay; a read in flight is its reader's to answer. */
  for (hub_resume *r = h->resumes, *next; r; r = next) {
    next = r->next;
    if (r->until) free(r);
  }
  wild_free(h->wild);
  hub_rate_free(h->rate);
  free(h->by_id);
  free(h->made);
  free(h);
}

void hub_get_stats(const td_hub *h, hub_stats *out) {
  *out = h->stats;
  out->channels = 0;
  for (uint32_t i = 0; i < h->nmade; i++) out->channels += sym_clients(h->by_id[h->made[i]]) > 0;
  wild_counts(h->wild, &out->patterns, &out->pattern_subscriptions);
  hub_rate_stats r;
  hub_rate_get_stats(h->rate, &r);
  memcpy(out->rate_skipped, r.skipped, sizeof(r.skipped));
  out->rate_frames_encoded = r.frames_encoded;
  out->rate_clients = r.clients;
  out->rate_groups = r.groups;
}

void hub_write_rate_groups(const td_hub *h, jsonw *w, const char *key) { hub_rate_write_groups(h->rate, w, key); }

void hub_set_candles(td_hub *h, struct candle_fan *f) { h->candles = f; }
struct candle_fan *hub_candles(const td_hub *h) { return h->candles; }

int hub_attach(td_hub *h, hub_client *c, td_conn *conn, hub_transport t, void *owner, hub_close_cb close) {
  memset(c, 0, sizeof(*c));
  if (h->stats.clients >= (uint64_t)h->opts.max_stream_clients) {
    h->stats.rejected_clients++;
    return -EBUSY;
  }
  c->conn = conn;
  c->transport = t;
  c->owner = owner;
  c->close = close;
  c->attached = true;
  c->next = h->clients;
  if (h->clients) h->clients->prev = c;
  h->clients = c;
  h->stats.clients++;
  if (t == HUB_WS) h->stats.ws_clients++;
  else h->stats.sse_clients++;
  return 0;
}

static void forget_continuity(hub_symbol *sym);
/* Member `m` of `sym` moves from interval group `from` to `to` (0: none). */
static void rate_move(td_hub *h, hub_symbol *sym, hub_transport t, hub_member *m, uint8_t from, uint8_t to) {
  if (from) {
    hub_rate_member(h->rate, from, sym->id, t, m->phase, -1);
    sym->throttled[t]--;
  }
  if (to) {
    hub_rate_member(h->rate, to, sym->id, t, m->phase, 1);
    sym->throttled[t]++;
  }
  m->group = to;
}

/* A client with patterns (`delta` 1) or no more (-1) in interval group
 * `g` (0: none, nothing to count). */
static void rate_wild(td_hub *h, const hub_client *c, uint8_t g, int delta) {
  if (g) hub_rate_wild(h->rate, g, c->transport, hub_rate_phase(conn_id(c->conn)), delta);
}

/* Removes subscription k of client c (swap-remove on both sides). */
static void drop_sub(td_hub *h, hub_client *c, uint32_t k) {
  hub_sub s = c->subs[k];
  hub_symbol *sym = h->by_id[s.sym];
  hub_member *members = sym->members[c->transport];
  rate_move(h, sym, c->transport, &members[s.pos], c->rate_group, 0);
  hub_client *moved = members[--sym->n[c->transport]].client;
  members[s.pos] = members[sym->n[c->transport]];
  if (moved != c) {
    for (uint32_t j = 0; j < moved->nsubs; j++)
      if (moved->subs[j].sym == s.sym) moved->subs[j].pos = s.pos;
  }
  c->subs[k] = c->subs[--c->nsubs];
  h->stats.client_subscriptions--;
  if (sym_clients(sym) == 0) {
    if (h->sub) sub_remove(h->sub, sym->channel);
    if (!sym_listened(h, sym)) forget_continuity(sym);
  }
}

/* Nobody listens any more, the channel's sequence goes on without us: what
 * a later subscription first receives starts a new continuity, not a gap. */
static void forget_continuity(hub_symbol *sym) {
  sym->last_epoch = sym->last_seq = 0;
  sym->check_continuity = false;
}

/* A pattern lost its last client: so may have the symbols it matched. */
static void forget_unlistened(td_hub *h) {
  for (uint32_t i = 0; i < h->nmade; i++) {
    hub_symbol *sym = h->by_id[h->made[i]];
    if (sym->last_seq && !sym_listened(h, sym)) forget_continuity(sym);
  }
}

static void resume_forget_client(td_hub *h, hub_client *c);
static void resume_release(td_hub *h, hub_symbol *sym, uint64_t epoch, uint64_t seq, bool after);

void hub_detach(td_hub *h, hub_client *c) {
  if (!c->attached) return;
  if (c->resuming) resume_forget_client(h, c);
  if (h->candles) candle_fan_detach(h->candles, c);
  if (c->nwild) rate_wild(h, c, c->rate_group, -1);
  if (c->wild && wild_detach(h->wild, c)) forget_unlistened(h);
  while (c->nsubs > 0) drop_sub(h, c, c->nsubs - 1);
  if (c->rate_group) hub_rate_leave(h->rate, c->rate_group);
  c->rate_group = 0;
  free(c->subs);
  c->subs = NULL;
  c->subs_cap = 0;
  for (int i = 0; i < h->ntopics; i++)
    if (c->topics & (1u << i)) h->topic_listeners[i]--;
  c->topics = 0;
  if (c->prev) c->prev->next = c->next;
  else h->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  h->stats.clients--;
  if (c->transport == HUB_WS) h->stats.ws_clients--;
  else h->stats.sse_clients--;
  c->attached = false;
}

/* ---- subscriptions -------------------------------------------------------------- */

static int client_sub_index(const hub_client *c, uint32_t sym) {
  for (uint32_t k = 0; k < c->nsubs; k++)
    if (c->subs[k].sym == sym) return (int)k;
  return -1;
}

int hub_subscribe(td_hub *h, hub_client *c, const char *s, size_t n) {
  size_t plen;
  int pattern = wild_parse(s, n, &plen);
  if (pattern) {
    if (pattern < 0) return pattern;
    int rc = wild_add(h->wild, c, s, plen);
    if (rc == 1 && c->nwild == 1) rate_wild(h, c, c->rate_group, 1);
    return rc;
  }
  if (!smsg_symbol_valid(s, n)) return -EINVAL;
  hub_symbol *existing = find_symbol(h, s, n);
  if (existing && client_sub_index(c, existing->id) >= 0) return 0;
  if (c->nsubs >= (uint32_t)h->opts.max_client_symbols) return -E2BIG;
  int err = 0;
  if (!existing && symtab_find(h->syms, s, n) == SYMTAB_NONE && h->introduced >= HUB_MAX_INTRODUCED_SYMBOLS) {
    /* The symbol table is shared with the quote store: ids made up by
     * clients must not crowd out the symbols data brings in. */
    if (h->stats.refused_unknown++ == 0) { /* logged once: the count is in /status */
      td_logline *l = log_begin(TD_LOG_WARN, "subscribe_symbol_limit_reached");
      if (l) {
        log_int(l, "max_introduced", HUB_MAX_INTRODUCED_SYMBOLS);
        log_strn(l, "symbol", s, n);
        log_end(l);
      }
    }
    return -ENOSPC;
  }
  hub_symbol *sym = existing ? existing : intern_symbol(h, s, n, &err);
  if (!sym) return err;
  if (c->nsubs == c->subs_cap) {
    uint32_t cap = c->subs_cap ? c->subs_cap * 2 : 4;
    hub_sub *ns = realloc(c->subs, cap * sizeof(*ns));
    if (!ns) return -ENOMEM;
    c->subs = ns;
    c->subs_cap = cap;
  }
  hub_transport t = c->transport;
  if (c->rate_group && hub_rate_member(h->rate, c->rate_group, sym->id, t, 0, 0) != 0) return -ENOMEM;
  if (sym->n[t] == sym->cap[t]) {
    uint32_t cap = sym->cap[t] ? sym->cap[t] * 2 : 4;
    hub_member *nm = realloc(sym->members[t], cap * sizeof(*nm));
    if (!nm) return -ENOMEM;
    sym->members[t] = nm;
    sym->cap[t] = cap;
  }
  c->subs[c->nsubs++] = (hub_sub){sym->id, sym->n[t]};
  hub_member *m = &sym->members[t][sym->n[t]++];
  *m = (hub_member){c, c->conn, c->deflate_bits, 0, hub_rate_phase(conn_id(c->conn))};
  rate_move(h, sym, t, m, 0, c->rate_group);
  h->stats.client_subscriptions++;
  if (sym_clients(sym) == 1 && h->sub) sub_add(h->sub, sym->channel);
  return 1;
}

int hub_unsubscribe(td_hub *h, hub_client *c, const char *s, size_t n) {
  size_t plen;
  if (wild_parse(s, n, &plen) > 0) {
    int rc = wild_remove(h->wild, c, s, plen);
    if (rc > 0 && !c->nwild) rate_wild(h, c, c->rate_group, -1);
    if (rc == 2) forget_unlistened(h);
    return rc > 0;
  }
  hub_symbol *sym = find_symbol(h, s, n);
  int k = sym ? client_sub_index(c, sym->id) : -1;
  if (k < 0) return 0;
  drop_sub(h, c, (uint32_t)k);
  return 1;
}

int hub_set_interval(td_hub *h, hub_client *c, int64_t ms) {
  if (!hub_rate_valid(ms)) return -EINVAL;
  if (ms == hub_client_interval(h, c)) return 0;
  int g = ms ? hub_rate_join(h->rate, (uint32_t)ms) : 0;
  if (g < 0) return g;
  /* Each subscription moves to the new group; its slot is made first, so
   * that a move cannot fail half-way. */
  for (uint32_t k = 0; g && k < c->nsubs; k++)
    if (hub_rate_member(h->rate, (uint8_t)g, c->subs[k].sym, c->transport, 0, 0) != 0) {
      hub_rate_leave(h->rate, (uint8_t)g);
      return -ENOMEM;
    }
  for (uint32_t k = 0; k < c->nsubs; k++) {
    hub_symbol *sym = h->by_id[c->subs[k].sym];
    rate_move(h, sym, c->transport, &sym->members[c->transport][c->subs[k].pos], c->rate_group, (uint8_t)g);
  }
  if (c->nwild) {
    rate_wild(h, c, c->rate_group, -1);
    rate_wild(h, c, (uint8_t)g, 1);
  }
  if (c->rate_group) hub_rate_leave(h->rate, c->rate_group);
  c->rate_group = (uint8_t)g;
  return 0;
}

uint32_t hub_client_interval(const td_hub *h, const hub_client *c) { return hub_rate_interval(h->rate, c->rate_group); }

void hub_write_client_symbols(const td_hub *h, const hub_client *c, jsonw *w, const char *key) {
  jw_array(w, key);
  for (uint32_t k = 0; k < c->nsubs; k++) jw_str(w, NULL, h->by_id[c->subs[k].sym]->symbol);
  wild_write_client(h->wild, c, w);
  jw_end(w);
}

/* ---- encoding ------------------------------------------------------------------ */

static int format_position(char *out, size_t size, const char *sym, uint64_t epoch, uint64_t seq) {
  char hex[SMSG_EPOCH_LEN + 1];
  qstore_epoch_format(epoch, hex);
  return snprintf(out, size, "%s:%s:%llu", sym, hex, (unsigned long long)seq);
}

/* The position of a quote as its id, or NULL (in `pos`) for a message
 * without one. */
static const char *quote_id(char pos[HUB_POSITION_MAX], const hub_symbol *sym, uint64_t epoch, uint64_t seq) {
  if (seq == QSTORE_NO_POSITION) return NULL;
  format_position(pos, HUB_POSITION_MAX, sym->symbol, epoch, seq);
  return pos;
}

/* A message without a position (pos NULL) has no "id": nobody can resume
 * from it. */
static td_buf *encode_ws_quote(const hub_symbol *sym, const char *pos, const char *payload, size_t len) {
  char head[HUB_ENVELOPE_MAX];
  int n = pos ? snprintf(head, sizeof(head), "{\"type\":\"quote\",\"channel\":\"%s\",\"symbol\":\"%s\",\"id\":\"%s\",\"data\":",
                         sym->channel, sym->symbol, pos)
              : snprintf(head, sizeof(head), "{\"type\":\"quote\",\"channel\":\"%s\",\"symbol\":\"%s\",\"data\":",
                         sym->channel, sym->symbol);
  return ws_frame_text_wrapped(head, (size_t)n, payload, len, "}", 1);
}

/* Without a position, no "id:" line: EventSource keeps the last id it had,
 * so its Last-Event-ID still names the last message it can resume from. */
static td_buf *encode_sse_quote(const char *pos, const char *payload, size_t len) {
  char head[HUB_POSITION_MAX + 32];
  int n = pos ? snprintf(head, sizeof(head), "id: %s\nevent: quote\ndata: ", pos)
              : snprintf(head, sizeof(head), "event: quote\ndata: ");
  td_buf *b = buf_new((size_t)n + len + 2);
  if (!b) return NULL;
  memcpy(b->data, head, (size_t)n);
  memcpy(b->data + n, payload, len);
  memcpy(b->data + n + len, "\n\n", 2);
  b->len = (uint32_t)((size_t)n + len + 2);
  return b;
}

void hub_send_text(td_hub *h, hub_client *c, const char *type, const char *json, size_t len) {
  td_buf *b;
  if (c->transport == HUB_WS) {
    b = ws_frame_encode(WS_OP_TEXT, json, len);
  } else {
    char head[64];
    int n = snprintf(head, sizeof(head), "event: %s\ndata: ", type);
    b = buf_new((size_t)n + len + 2);
    if (b) {
      memcpy(b->data, head, (size_t)n);
      memcpy(b->data + n, json, len);
      memcpy(b->data + n + len, "\n\n", 2);
      b->len = (uint32_t)((size_t)n + len + 2);
    }
  }
  /* per-client content: compressed for this client alone */
  wsd_variant v = wsd_variant_of(b);
  if (b) conn_send(c->conn, wsd_pick(&v, c->deflate_bits), 0);
  wsd_variant_done(&v);
}

void hub_send_json(td_hub *h, hub_client *c, const char *type, jsonw *w) {
  if (c->transport == HUB_WS) jw_str(w, "type", type); /* SSE names it in `event:` */
  jw_end(w);
  if (!w->failed) hub_send_text(h, c, type, w->p, w->len);
  jw_free(w);
}

/* ---- delivery ------------------------------------------------------------------ */

/* The slow path of deliver: `c` has `queued` bytes waiting, more than its
 * soft or hard limit. Returns false when the client was closed. */
static bool over_limit(td_hub *h, hub_client *c, size_t queued) {
  const td_hub_opts *opts = &h->opts;
  uint64_t now = uv_now(h->opts.loop);
  const char *why = NULL;
  if (queued >= (size_t)opts->client_hard_bytes) {
    why = "slow consumer: output buffer over the hard limit";
  } else if (queued >= (size_t)opts->client_soft_bytes) {
    if (!c->over_soft_since) {
      c->over_soft_since = now ? now : 1;
      conn_notify_drain(c->conn); /* hub_client_drained once it catches up */
    } else if (now - c->over_soft_since >= (uint64_t)opts->client_soft_ms) {
      why = "slow consumer: output buffer over the soft limit for too long";
    }
    if (!why) {
      size_t dropped = conn_conflate(c->conn, symtab_max(h->syms)); /* tags: symbol id + 1 */
      c->conflated += dropped;
      h->stats.conflated += dropped;
    }
  }
  if (!why) return true;
  h->stats.slow_closes++;
  td_logline *l = log_begin(TD_LOG_WARN, "slow_client_closed");
  if (l) {
    log_str(l, "client_ip", conn_peer_ip(c->conn));
    log_str(l, "reason", why);
    log_int(l, "queued_bytes", (int64_t)queued);
    log_int(l, "conflated", (int64_t)c->conflated);
    log_end(l);
  }
  c->close(c->owner, WS_CLOSE_POLICY, why);
  return false;
}

/* Whether `c` waits for a replay of symbol `sym` from Redis (hub_resume):
 * its live quotes of that symbol would come before the replay. After the
 * replay only positioned messages stay held (one the read already replayed
 * may still arrive live); a message without a position (another
 * producer's) cannot be a repeat, so it goes through. Walked only while
 * both have a resume in flight; the list holds the resumes in flight. */
static bool held_back(const td_hub *h, const hub_client *c, uint32_t sym, bool positioned) {
  for (const hub_resume *r = h->resumes; r; r = r->next)
    if (r->client == c && r->sym == sym && (positioned || !r->until)) return true;
  return false;
}

/* Queues `b` for member `m` under the output limits (`below`: the lower of
 * the soft and hard limits, under which nothing needs checking). */
static void deliver(td_hub *h, const hub_member *m, wsd_variant *v, uint32_t tag, bool positioned, size_t below) {
  if (tag && h->by_id[tag - 1]->resuming && m->client->resuming && held_back(h, m->client, tag - 1, positioned))
    return;
  size_t queued = conn_queued_bytes(m->conn);
  if (queued >= below && !over_limit(h, m->client, queued)) return;
  conn_send(m->conn, wsd_pick(v, m->deflate_bits), tag);
  h->stats.deliveries++;
}

bool hub_deliver(td_hub *h, hub_client *c, wsd_variant *v, bool droppable) {
  const td_hub_opts *opts = &h->opts;
  size_t queued = conn_queued_bytes(c->conn);
  if (queued >= (size_t)opts->client_soft_bytes || queued >= (size_t)opts->client_hard_bytes) {
    if (!over_limit(h, c, queued)) return false;
    if (droppable) return false;
  }
  conn_send(c->conn, wsd_pick(v, c->deflate_bits), 0);
  h->stats.deliveries++;
  return true;
}

/* The lower of the soft and hard output limits: under it nothing needs checking. */
static size_t below_limits(const td_hub *h) {
  const td_hub_opts *opts = &h->opts;
  return (size_t)(opts->client_soft_bytes < opts->client_hard_bytes ? opts->client_soft_bytes
                                                                     : opts->client_hard_bytes);
}

/* What a pattern's walk (wild_each) delivers. */
typedef struct {
  td_hub *h;
  wsd_variant *bufs;
  uint32_t tag;
  bool positioned;
  size_t below;
  uint8_t group, phase;  /* the clients served: of this interval group (0: unthrottled) and phase */
} wild_delivery;

static void deliver_wild(void *arg, hub_client *c) {
  wild_delivery *d = arg;
  /* a throttled client: its group's tick delivers (rate_flush) */
  if (c->rate_group != d->group || (d->group && hub_rate_phase(conn_id(c->conn)) != d->phase)) return;
  hub_member m = {.client = c, .conn = c->conn, .deflate_bits = c->deflate_bits};
  uint64_t before = d->h->stats.deliveries;
  deliver(d->h, &m, &d->bufs[c->transport], d->tag, d->positioned, d->below);
  d->h->stats.pattern_deliveries += d->h->stats.deliveries - before;
}

/* Queues `bufs` (one encoding per transport, NULL: none) on the clients of
 * `sym` in interval group `group` (0: the unthrottled ones) and, for a
 * group, its `phase`: the same bytes on each (compressed at most once,
 * shared by the WebSocket clients that negotiated permessage-deflate). */
static void deliver_all(td_hub *h, hub_symbol *sym, uint8_t group, uint8_t phase, wsd_variant bufs[HUB_TRANSPORTS],
                        bool positioned) {
  size_t below = below_limits(h);
  for (int t = 0; t < HUB_TRANSPORTS; t++) {
    if (!bufs[t].plain) continue;
    /* backwards: a client closed for being slow is swap-removed behind us */
    for (uint32_t i = sym->n[t]; i-- > 0;) {
      const hub_member *m = &sym->members[t][i];
      if (m->group == group && (!group || m->phase == phase)) deliver(h, m, &bufs[t], sym->id + 1, positioned, below);
    }
  }
  /* then the patterns' clients of the same group and phase that did not
   * name the symbol (each once: wild_each) */
  uint8_t pats[HUB_MAX_PATTERNS];
  uint32_t want[HUB_TRANSPORTS] = {0};
  uint32_t np = wild_match(h->wild, sym->symbol, symtab_len(h->syms, sym->id), pats, want);
  if (np) {
    wild_delivery d = {h, bufs, sym->id + 1, positioned, below, group, phase};
    wild_each(h->wild, pats, np, sym->id, deliver_wild, &d);
  }
}

static td_buf *encode_quote(const hub_symbol *sym, hub_transport t, uint64_t epoch, uint64_t seq, const char *payload,
                            size_t len) {
  char posbuf[HUB_POSITION_MAX];
  const char *pos = quote_id(posbuf, sym, epoch, seq);
  return t == HUB_WS ? encode_ws_quote(sym, pos, payload, len) : encode_sse_quote(pos, payload, len);
}

/* Sends one message to every client of `sym`, then to the clients of the
 * patterns that match it (each client once): encoded once per transport,
 * now to the unthrottled clients, on their group's tick to those with an
 * interval (hub_rate.c), whether they named the symbol or a pattern of it. */
static void fan_out(td_hub *h, hub_symbol *sym, uint64_t epoch, uint64_t seq, const char *payload, size_t len) {
  uint8_t pats[HUB_MAX_PATTERNS];
  uint32_t want[HUB_TRANSPORTS] = {sym->n[HUB_WS] - sym->throttled[HUB_WS], sym->n[HUB_SSE] - sym->throttled[HUB_SSE]};
  uint32_t np = wild_match(h->wild, sym->symbol, symtab_len(h->syms, sym->id), pats, want);
  hub_rate_offer(h->rate, sym->id, np > 0, epoch, seq, payload, len);
  wsd_variant bufs[HUB_TRANSPORTS];
  for (int t = 0; t < HUB_TRANSPORTS; t++)
    bufs[t] = wsd_variant_of(want[t] ? encode_quote(sym, (hub_transport)t, epoch, seq, payload, len) : NULL);
  deliver_all(h, sym, 0, 0, bufs, seq != QSTORE_NO_POSITION);
  for (int t = 0; t < HUB_TRANSPORTS; t++) wsd_variant_done(&bufs[t]);
}

/* An interval group's tick (hub_rate.c): its newest message of a symbol,
 * encoded once for all its phases. */
static td_buf *rate_encode(void *ud, uint32_t id, hub_transport t, uint64_t epoch, uint64_t seq, const char *payload,
                           size_t len) {
  td_hub *h = ud;
  return encode_quote(h->by_id[id], t, epoch, seq, payload, len);
}

static void rate_flush(void *ud, uint32_t id, uint8_t group, uint8_t phase, wsd_variant bufs[HUB_TRANSPORTS],
                       uint64_t seq) {
  td_hub *h = ud;
  deliver_all(h, h->by_id[id], group, phase, bufs, seq != QSTORE_NO_POSITION);
}

void hub_client_drained(hub_client *c) { c->over_soft_since = 0; }

uint64_t hub_first_ping_ms(const hub_client *c, uint64_t interval) {
  uint64_t half = interval / 2;
  /* Knuth's multiplicative hash of the connection id: consecutive ids land far apart. */
  return half ? interval - (conn_id(c->conn) * 2654435761u) % half : interval;
}

/* Sends one message to one client (replay and snapshots). */
static void send_quote(hub_client *c, const hub_symbol *sym, uint64_t epoch, uint64_t seq, const char *data,
                       size_t len) {
  /* one client: a snapshot or replayed quote is compressed for it alone */
  wsd_variant v = wsd_variant_of(encode_quote(sym, c->transport, epoch, seq, data, len));
  if (v.plain) conn_send(c->conn, wsd_pick(&v, c->deflate_bits), sym->id + 1);
  wsd_variant_done(&v);
}

static void send_entry(td_hub *h, hub_client *c, const hub_symbol *sym, const qstore_entry *e) {
  send_quote(c, sym, e->epoch, e->seq, e->payload->data, e->payload->len);
}

typedef struct {
  td_hub *h;
  const hub_symbol *sym;
  bool recovered;
  uint64_t replayed, from, to;
} continuity_notice;

static void send_continuity(void *arg, hub_client *c) {
  const continuity_notice *n = arg;
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  jw_str(&w, "symbol", n->sym->symbol);
  jw_bool(&w, "recovered", n->recovered);
  jw_u64(&w, "replayed", n->replayed);
  if (!n->recovered) {
    jw_u64(&w, "missed_from", n->from);
    jw_u64(&w, "missed_to", n->to);
  }
  hub_send_json(n->h, c, "recovery", &w);
}

/* Tells the clients of `sym` (its own and its patterns') about continuity:
 * a gap that local history could not fill, or (after a resubscribe) that
 * nothing was lost. */
static void notify_continuity(td_hub *h, hub_symbol *sym, bool recovered, uint64_t replayed, uint64_t from,
                              uint64_t to) {
  continuity_notice n = {h, sym, recovered, replayed, from, to};
  for (int t = 0; t < HUB_TRANSPORTS; t++)
    for (uint32_t i = sym->n[t]; i-- > 0;) send_continuity(&n, sym->members[t][i].client);
  uint8_t pats[HUB_MAX_PATTERNS];
  uint32_t want[HUB_TRANSPORTS] = {0};
  uint32_t np = wild_match(h->wild, sym->symbol, symtab_len(h->syms, sym->id), pats, want);
  if (np) wild_each(h->wild, pats, np, sym->id, send_continuity, &n);
}

/* A sequence gap on a channel: fill it from local history when this
 * instance has the messages (it published them), else say so. */
static bool in_gap(const qstore_entry *e, uint64_t epoch, uint64_t from, uint64_t to) {
  return e->epoch == epoch && e->seq >= from && e->seq <= to;
}

static void handle_gap(td_hub *h, hub_symbol *sym, uint64_t epoch, uint64_t seq) {
  uint64_t from = sym->last_seq + 1, to = seq - 1, found = 0, want = to - from + 1;
  size_t cap = (size_t)h->opts.history_size;
  qstore_entry *es = want <= cap ? calloc(cap, sizeof(*es)) : NULL;
  if (es) {
    size_t n = qstore_history_id(h->store, SMSG_QUOTE, sym->id, cap, uv_now(h->opts.loop), es);
    for (size_t i = 0; i < n; i++) found += in_gap(&es[i], epoch, from, to);
    if (found == want) {
      for (size_t i = 0; i < n; i++)
        if (in_gap(&es[i], epoch, from, to))
          fan_out(h, sym, es[i].epoch, es[i].seq, es[i].payload->data, es[i].payload->len);
      h->stats.replayed += found * sym_clients(sym);
    }
    free(es);
  }
  h->stats.gaps++;
  td_logline *l = log_begin(TD_LOG_WARN, "stream_gap");
  if (l) {
    log_str(l, "channel", sym->channel);
    log_int(l, "missed_from", (int64_t)from);
    log_int(l, "missed_to", (int64_t)to);
    log_bool(l, "recovered", found == want);
    log_end(l);
  }
  notify_continuity(h, sym, found == want, found == want ? found : 0, from, to);
}

/* After a resubscribe the channel's line changed under its clients.
 * Another epoch: Redis lost the channel's position (a restart without
 * persistence, a failover to a replica that never had it); messages 1 ..
 * seq - 1 of the new epoch came while this instance was not subscribed,
 * and are a gap like any other. A sequence that went back: a failover to
 * a replica that had not received the last messages. Positions up to
 * last_seq that the clients saw may now name other messages, and the new
 * line's messages before seq came while this instance was away; where the
 * two lines part is not known here, so the range reported is 1 ..
 * max(last_seq, seq - 1), recovered:false: the clients refetch. */
static void handle_new_line(td_hub *h, hub_symbol *sym, uint64_t epoch, uint64_t seq) {
  if (sym->last_epoch == epoch) {
    h->stats.gaps++;
    td_logline *l = log_begin(TD_LOG_WARN, "stream_rewound");
    if (l) {
      log_str(l, "channel", sym->channel);
      log_int(l, "seq", (int64_t)seq);
      log_int(l, "last_seq", (int64_t)sym->last_seq);
      log_end(l);
    }
    notify_continuity(h, sym, false, 0, 1, seq - 1 > sym->last_seq ? seq - 1 : sym->last_seq);
    sym->last_seq = seq - 1;
    return;
  }
  sym->last_epoch = epoch;
  sym->last_seq = 0;
  if (seq > 1) handle_gap(h, sym, epoch, seq);
  else notify_continuity(h, sym, true, 0, 0, 0);
}

/* A message from Redis that is neither stored nor delivered: logged, at most
 * once per `every_ms` under `lim` (`detail`, when not NULL, says more). */
static void refuse(td_hub *h, const hub_symbol *sym, hub_log_limit *lim, uint64_t every_ms, const char *reason,
                   const char *detail) {
  uint64_t now = uv_now(h->opts.loop);
  if (lim->logged_ms && now - lim->logged_ms < every_ms) {
    lim->suppressed++;
    return;
  }
  td_logline *l = log_begin(TD_LOG_WARN, "stream_message_refused");
  if (l) {
    log_str(l, "channel", sym->channel);
    log_str(l, "reason", reason);
    if (detail) log_str(l, "detail", detail);
    log_int(l, "suppressed", (int64_t)lim->suppressed);
    log_end(l);
  }
  lim->logged_ms = now ? now : 1;
  lim->suppressed = 0;
}

static void refuse_misfiled(td_hub *h, const hub_symbol *sym) {
  h->stats.misfiled++;
  refuse(h, sym, &h->refused_log, HUB_BAD_LOG_MS, "the payload's symbol \"S\" is not the channel's", NULL);
}

static void refuse_malformed(td_hub *h, hub_symbol *sym, const char *reason, const char *detail) {
  h->stats.bad_messages++;
  refuse(h, sym, &sym->malformed_log, HUB_MALFORMED_LOG_MS, reason, detail);
}

/* A message another producer published without a position ("seq" and
 * "epoch" at the end, as tickerd writes them). It must be one JSON object
 * whose "S" is the channel's symbol; it is then streamed without an id and
 * stored without a position, so that it neither moves the channel's
 * sequence tracking nor looks like a gap, and can be the latest quote.
 * This is the only path that parses a payload: tickerd's own messages are
 * read from their tail and head alone. */
static void on_unpositioned(td_hub *h, hub_symbol *sym, const char *payload, size_t len) {
  if (len > HUB_UNPOSITIONED_MAX) {
    refuse_malformed(h, sym, "larger than a message without a position may be", NULL);
    return;
  }
  json_error_t err;
  json_t *o = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &err);
  if (!json_is_object(o)) {
    refuse_malformed(h, sym, "not a JSON object", o ? "another JSON value" : err.text);
    json_decref(o);
    return;
  }
  const char *s = json_string_value(json_object_get(o, "S"));
  bool ours = s && !strcmp(s, sym->symbol);
  json_decref(o);
  if (!ours) {
    refuse_misfiled(h, sym);
    return;
  }
  td_buf *data = buf_from(payload, len);
  if (!data) return;
  /* A raw line break can only be whitespace between JSON tokens (strings
   * escape theirs), but it would end an SSE data: line early. */
  for (uint32_t i = 0; i < data->len; i++)
    if (data->data[i] == '\n' || data->data[i] == '\r') data->data[i] = ' ';
  h->stats.unpositioned++;
  qstore_insert_id(h->store, SMSG_QUOTE, sym->id, data, 0, QSTORE_NO_POSITION, uv_now(h->opts.loop));
  fan_out(h, sym, 0, QSTORE_NO_POSITION, data->data, data->len);
  buf_unref(data);
}

/* The ingest state, checked per message from Redis: KEEPING_UP (not
 * h->stats.overloaded) -> BEHIND once the subscriber has read behind Redis
 * for --overload-behind-ms (HUB_BEHIND_MS); BEHIND -> KEEPING_UP once it
 * has not been for HUB_OVERLOAD_HOLD_MS. While BEHIND each flush conflates
 * every client (the flush's own work shrinks to one quote per symbol per
 * client, and the loop's time goes back to reading): quotes are dropped for
 * newer ones as for a slow client, rather than Redis cutting the subscriber
 * and every client losing them. */
static void check_ingest(td_hub *h) {
  uint64_t now = uv_now(h->opts.loop);
  /* the subscriber is asked once per loop time tick, not per message */
  if (now == h->ingest_checked_ms) {
    if (h->stats.overloaded) conn_conflate_next_flush(symtab_max(h->syms));
    return;
  }
  h->ingest_checked_ms = now;
  if (h->sub && sub_behind_ms(h->sub) >= (uint64_t)h->opts.overload_behind_ms) h->last_behind_ms = now;
  bool behind = h->last_behind_ms && now - h->last_behind_ms < (h->stats.overloaded ? HUB_OVERLOAD_HOLD_MS : 1);
  if (behind) conn_conflate_next_flush(symtab_max(h->syms)); /* tags: symbol id + 1 */
  if (behind == h->stats.overloaded) return;
  h->stats.overloaded = behind;
  td_logline *l;
  if (behind) {
    h->stats.overloads++;
    h->overload_conflated_at = http_stats.stream_overload_conflated;
    l = log_begin(TD_LOG_WARN, "stream_overloaded");
    if (l) log_int(l, "behind_ms", (int64_t)sub_behind_ms(h->sub));
  } else {
    l = log_begin(TD_LOG_WARN, "stream_caught_up");
    if (l) log_int(l, "conflated", (int64_t)(http_stats.stream_overload_conflated - h->overload_conflated_at));
  }
  if (l) {
    log_int(l, "clients", (int64_t)h->stats.clients);
    log_end(l);
  }
}

/* A message of a symbol the hub has (some client subscribed to it once). */
static void on_quote(td_hub *h, hub_symbol *sym, const char *payload, size_t payload_len) {
  h->stats.messages++;
  check_ingest(h);
  uint64_t seq, epoch;
  if (smsg_payload_position(payload, payload_len, &seq, &epoch) != 0) {
    on_unpositioned(h, sym, payload, payload_len);
    return;
  }
  /* Another producer may publish anything anywhere: a quote of MSFT on
   * quotes:EXT2 would be streamed and stored as EXT2's. */
  const char *ps;
  size_t ps_len;
  if (smsg_payload_symbol(payload, payload_len, &ps, &ps_len) != 0 || ps_len != symtab_len(h->syms, sym->id) ||
      memcmp(ps, sym->symbol, ps_len)) {
    refuse_misfiled(h, sym);
    return;
  }
  /* Nobody listens (a message in flight when the last client left): it
   * starts no continuity for a later subscription to check against. */
  bool listened = sym_listened(h, sym);
  if (listened && sym->check_continuity && sym->last_seq != 0 && (sym->last_epoch != epoch || seq <= sym->last_seq)) {
    handle_new_line(h, sym, epoch, seq);
  } else if (listened && sym->last_epoch == epoch && seq > sym->last_seq + 1 && sym->last_seq != 0) {
    handle_gap(h, sym, epoch, seq);
  } else if (listened && sym->check_continuity && sym->last_seq != 0) {
    notify_continuity(h, sym, true, 0, 0, 0);
  }
  sym->check_continuity = false;
  if (listened && (sym->last_epoch != epoch || seq > sym->last_seq)) {
    sym->last_epoch = epoch;
    sym->last_seq = seq;
  }
  /* This process's own message (its epoch) was stored by the pipeline
   * before it was published: only other instances' are stored here. */
  if (epoch != qstore_epoch(h->store)) {
    td_buf *data = buf_from(payload, payload_len);
    if (!data) return;
    qstore_insert_id(h->store, SMSG_QUOTE, sym->id, data, epoch, seq, uv_now(h->opts.loop));
    buf_unref(data);
  }
  if (sym->resuming) resume_release(h, sym, epoch, seq, false);
  fan_out(h, sym, epoch, seq, payload, payload_len);
  if (sym->resuming) resume_release(h, sym, epoch, seq, true);
}

/* A pattern's message may name a symbol no client named, or none the
 * process has seen (another producer's): the data brings it in, as a feed
 * does (not counted against HUB_MAX_INTRODUCED_SYMBOLS). NULL when no
 * pattern wants it, the name is not a symbol or the table is full. */
static hub_symbol *wild_symbol(td_hub *h, const char *s, size_t n) {
  uint8_t pats[HUB_MAX_PATTERNS];
  uint32_t want[HUB_TRANSPORTS] = {0};
  uint32_t id;
  int err;
  if (!wild_match(h->wild, s, n, pats, want) || !smsg_symbol_valid(s, n)) return NULL;
  if (symtab_intern(qstore_symtab(h->store), s, n, &id) < 0) return NULL;
  return h->by_id[id] ? h->by_id[id] : intern_symbol(h, s, n, &err);
}

void hub_on_message(void *hub, const char *channel, size_t channel_len, const char *payload, size_t payload_len) {
  td_hub *h = hub;
  size_t plen = strlen(h->opts.channel_prefix);
  if (channel_len <= plen + 1 || memcmp(channel, h->opts.channel_prefix, plen) || channel[plen] != ':') return;
  hub_symbol *sym = find_symbol(h, channel + plen + 1, channel_len - plen - 1);
  if (!sym) sym = wild_symbol(h, channel + plen + 1, channel_len - plen - 1);
  if (sym) on_quote(h, sym, payload, payload_len);
}

void hub_on_message_id(void *hub, uint32_t id, const char *channel, size_t channel_len, const char *payload,
                       size_t payload_len) {
  td_hub *h = hub;
  if (id == SYMTAB_NONE) {
    hub_on_message(hub, channel, channel_len, payload, payload_len);
    return;
  }
  hub_symbol *sym = id < symtab_max(h->syms) ? h->by_id[id] : NULL;
  if (!sym && id < symtab_max(h->syms)) sym = wild_symbol(h, symtab_name(h->syms, id), symtab_len(h->syms, id));
  if (sym) on_quote(h, sym, payload, payload_len);
}

void hub_on_subscriber_state(void *hub, bool ready, bool resubscribed) {
  td_hub *h = hub;
  if (!ready || !resubscribed) return;
  /* the next message of each channel tells whether anything was lost meanwhile */
  for (uint32_t i = 0; i < h->nmade; i++) {
    hub_symbol *sym = h->by_id[h->made[i]];
    sym->check_continuity = sym_listened(h, sym);
  }
}

/* ---- snapshots and recovery -------------------------------------------------------- */

static void send_history(td_hub *h, hub_client *c, hub_symbol *sym, int limit) {
  qstore_entry *es = calloc((size_t)limit, sizeof(*es));
  if (!es) return;
  size_t n = qstore_history_id(h->store, SMSG_QUOTE, sym->id, (size_t)limit, uv_now(h->opts.loop), es);
  if (c->transport == HUB_SSE) {
    for (size_t i = 0; i < n; i++) send_entry(h, c, sym, &es[i]);
  } else {
    size_t total = 64 + TD_SYMBOL_MAX;
    for (size_t i = 0; i < n; i++) total += es[i].payload->len + 1;
    char *text = malloc(total);
    if (text) {
      size_t off = (size_t)snprintf(text, total, "{\"type\":\"history\",\"symbol\":\"%s\",\"quotes\":[", sym->symbol);
      for (size_t i = 0; i < n; i++) {
        if (i) text[off++] = ',';
        memcpy(text + off, es[i].payload->data, es[i].payload->len);
        off += es[i].payload->len;
      }
      text[off++] = ']';
      text[off++] = '}';
      hub_send_text(h, c, "history", text, off);
      free(text);
    }
  }
  free(es);
}

static void send_snapshot_of(td_hub *h, hub_client *c, hub_symbol *sym, int history) {
  if (history > 0) {
    send_history(h, c, sym, history > h->opts.history_size ? h->opts.history_size : history);
    return;
  }
  qstore_entry e;
  if (qstore_latest_id(h->store, SMSG_QUOTE, sym->id, &e)) send_entry(h, c, sym, &e);
}

static bool matches_any(const char *name, size_t n, const char *const *prefix, const size_t *plen, uint32_t np) {
  for (uint32_t j = 0; j < np; j++)
    if (n >= plen[j] && !memcmp(name, prefix[j], plen[j])) return true;
  return false;
}

/* The patterns' snapshot: the latest quote of each symbol the store holds
 * that one of them matches and the client did not name (that one has its
 * own), once, at most HUB_WILD_SNAPSHOT_MAX, oldest-known symbols first. */
static void send_patterns_snapshot(td_hub *h, hub_client *c, const char *const *prefix, const size_t *plen,
                                   uint32_t np) {
  uint32_t sent = 0, count = symtab_count(h->syms);
  qstore_entry e;
  int err;
  for (uint32_t id = 0; np && id < count && sent < HUB_WILD_SNAPSHOT_MAX; id++) {
    const char *name = symtab_name(h->syms, id);
    size_t n = symtab_len(h->syms, id);
    if (!matches_any(name, n, prefix, plen, np) || client_sub_index(c, id) >= 0 ||
        !qstore_latest_id(h->store, SMSG_QUOTE, id, &e))
      continue;
    hub_symbol *sym = h->by_id[id] ? h->by_id[id] : intern_symbol(h, name, n, &err);
    if (!sym) break;
    send_entry(h, c, sym, &e);
    sent++;
  }
}

void hub_send_snapshot(td_hub *h, hub_client *c, const char *const *syms, size_t n, int history) {
  const char *prefix[HUB_MAX_CLIENT_PATTERNS];
  size_t plen[HUB_MAX_CLIENT_PATTERNS];
  uint32_t np = 0;
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(syms[i]), pl;
    if (wild_parse(syms[i], len, &pl) > 0) {
      if (np < HUB_MAX_CLIENT_PATTERNS) { /* a client holds no more */
        prefix[np] = syms[i];
        plen[np++] = pl;
      }
      continue;
    }
    hub_symbol *sym = find_symbol(h, syms[i], len);
    if (sym) send_snapshot_of(h, c, sym, history);
  }
  send_patterns_snapshot(h, c, prefix, plen, np);
}

/* "SYMBOL:epochhex:seq" */
static bool parse_position(const char *s, size_t n, char *sym, size_t *sym_len, uint64_t *epoch, uint64_t *seq) {
  const char *c1 = memchr(s, ':', n);
  if (!c1 || (size_t)(c1 - s) > TD_SYMBOL_MAX || c1 == s) return false;
  const char *rest = c1 + 1;
  size_t rest_n = n - (size_t)(rest - s);
  if (rest_n < SMSG_EPOCH_LEN + 2 || rest[SMSG_EPOCH_LEN] != ':') return false;
  if (qstore_epoch_parse(rest, SMSG_EPOCH_LEN, epoch) != 0) return false;
  uint64_t v = 0;
  const char *d = rest + SMSG_EPOCH_LEN + 1, *end = s + n;
  if (d == end || end - d > 19) return false;
  for (; d < end; d++) {
    if (*d < '0' || *d > '9') return false;
    v = v * 10 + (uint64_t)(*d - '0');
  }
  *seq = v;
  *sym_len = (size_t)(c1 - s);
  memcpy(sym, s, *sym_len);
  sym[*sym_len] = '\0';
  return smsg_symbol_valid(sym, *sym_len);
}

/* A position names one symbol: a client's patterns are not replayed (a
 * `*` replay could be the whole store, past any output limit). They get
 * their snapshot instead, and "recovered" is false: the client knows to
 * take the snapshot as its state. */
static void send_recovery(td_hub *h, hub_client *c, bool recovered, const char *since, size_t n, uint64_t replayed) {
  const char *prefix[HUB_MAX_CLIENT_PATTERNS];
  size_t plen[HUB_MAX_CLIENT_PATTERNS];
  for (uint32_t k = 0; k < c->nwild; k++) prefix[k] = wild_client_prefix(h->wild, c, k, &plen[k]);
  send_patterns_snapshot(h, c, prefix, plen, c->nwild);
  recovered = recovered && !c->nwild;
  h->stats.replayed += replayed;
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  jw_bool(&w, "recovered", recovered);
  jw_strn(&w, "since", since, n);
  jw_u64(&w, "replayed", replayed);
  hub_send_json(h, c, "recovery", &w);
}

/* ---- resume from the Redis stream ---------------------------------------------- */

/* Unlinks `r` and frees it: its read has answered. */
static void resume_unlink(td_hub *h, hub_resume *r) {
  hub_resume **pp = &h->resumes;
  while (*pp != r) pp = &(*pp)->next;
  *pp = r->next;
  free(r);
}

static void resume_forget_client(td_hub *h, hub_client *c) {
  for (hub_resume *r = h->resumes, *next; r; r = next) {
    next = r->next;
    if (r->client != c) continue;
    r->client = NULL;
    h->by_id[r->sym]->resuming--;
    if (r->until) resume_unlink(h, r);   /* held after its replay: no read will free it */
  }
  c->resuming = 0;
}

/* Ends the holds of `sym` that live message (epoch, seq) passes: before
 * it is fanned out, those it follows (`seq > until`, or another epoch);
 * after it, also the one it ends on (`seq == until`). */
static void resume_release(td_hub *h, hub_symbol *sym, uint64_t epoch, uint64_t seq, bool after) {
  for (hub_resume *r = h->resumes, *next; r; r = next) {
    next = r->next;
    if (!r->until || r->sym != sym->id) continue;
    if (r->epoch == epoch && (seq < r->until || (seq == r->until && !after))) continue;
    if (r->client) {
      sym->resuming--;
      r->client->resuming--;
    }
    resume_unlink(h, r);
  }
}

/* The entries of the cache after the stream's top, of the same epoch: what
 * arrived live while the read was out, held back from this client. NULL
 * with *n 0 when there are none; false when they do not follow the top
 * without a hole (more arrived than the cache keeps, or memory ran out). */
static bool cache_after(td_hub *h, hub_symbol *sym, uint64_t epoch, uint64_t top, qstore_entry **out, size_t *n) {
  size_t cap = (size_t)h->opts.history_size, got, k = 0;
  qstore_entry *es = calloc(cap, sizeof(*es));
  *out = NULL;
  *n = 0;
  if (!es) return false;
  got = qstore_history_id(h->store, SMSG_QUOTE, sym->id, cap, uv_now(h->opts.loop), es);
  for (size_t i = 0; i < got; i++)
    if (es[i].epoch == epoch && es[i].seq > top) {
      if (es[i].seq != top + 1 + k) {
        free(es);
        return false;
      }
      es[k++] = es[i];
    }
  *out = es;
  *n = k;
  return true;
}

/* All or nothing: the stream holds every message after the position, of
 * the position's epoch, or the client gets the latest quote and
 * `recovered: false`. A position names one symbol: the client's other
 * symbols get their latest quote, and the resume is complete only for a
 * client of that symbol alone. */
static void on_resume_read(void *ud, const hr_read_result *res) {
  hub_resume *r = ud;
  td_hub *h = r->hub;
  hub_client *c = r->client;
  if (c) {
    hub_symbol *sym = h->by_id[r->sym];
    bool complete = res->ok && res->epoch == r->epoch && res->top >= r->seq && res->n == res->top - r->seq &&
                    (res->n == 0 || res->e[0].seq == r->seq + 1);
    uint64_t replayed = 0;
    qstore_entry *tail = NULL;
    size_t ntail = 0;
    complete = complete && cache_after(h, sym, r->epoch, res->top, &tail, &ntail);
    if (complete) {
      for (size_t i = 0; i < res->n; i++) send_quote(c, sym, r->epoch, res->e[i].seq, res->e[i].payload, res->e[i].len);
      for (size_t i = 0; i < ntail; i++) send_entry(h, c, sym, &tail[i]);
      replayed = res->n + ntail;
      h->stats.resumed_from_redis++;
      /* A channel just subscribed has no continuity yet: start it at what
       * was replayed, so that a message published between the read and
       * the SUBSCRIBE shows as a gap (hub_on_message) instead of vanishing. */
      if (sym->last_seq == 0) {
        sym->last_epoch = r->epoch;
        sym->last_seq = res->top + ntail;
      }
      r->until = res->top + ntail;
    }
    if (!r->until) {
      sym->resuming--;
      c->resuming--;
    }
    free(tail);
    qstore_entry latest;
    for (uint32_t k = 0; k < c->nsubs; k++) {
      hub_symbol *other = h->by_id[c->subs[k].sym];
      if (other == sym && complete) continue;
      if (other == sym && res->last.payload && !qstore_latest_id(h->store, SMSG_QUOTE, sym->id, &latest))
        send_quote(c, sym, res->epoch, res->last.seq, res->last.payload, res->last.len); /* a restarted instance */
      else
        send_snapshot_of(h, c, other, 0);
    }
    send_recovery(h, c, complete && c->nsubs == 1, r->since, r->since_len, replayed);
  }
  if (!r->until) resume_unlink(h, r);
}

/* Asks the Redis stream for what the cache does not hold. false when no
 * read could be sent (memory only, not subscribed, Redis away). */
static bool resume_from_redis(td_hub *h, hub_client *c, const char *sym_name, size_t sym_len, uint64_t epoch,
                              uint64_t seq, const char *since, size_t n) {
  hub_symbol *sym = h->history ? find_symbol(h, sym_name, sym_len) : NULL;
  if (!sym || client_sub_index(c, sym->id) < 0) return false;
  hub_resume *r = malloc(sizeof(*r) + n);
  if (!r) return false;
  *r = (hub_resume){h, c, sym->id, epoch, seq, 0, h->resumes, n};
  memcpy(r->since, since, n);
  if (hr_read(h->history, sym->channel, strlen(sym->channel), seq, on_resume_read, r) < 0) {
    free(r);
    return false;
  }
  h->resumes = r;
  sym->resuming++;
  c->resuming++;
  return true;
}

void hub_set_history(td_hub *h, hr_reader *history) { h->history = history; }

void hub_recover(td_hub *h, hub_client *c, const char *since, size_t n) {
  char symbuf[TD_SYMBOL_MAX + 1];
  size_t sym_len;
  uint64_t epoch, seq, ordinal = 0, replayed = 0;
  bool parsed = parse_position(since, n, symbuf, &sym_len, &epoch, &seq);
  if (parsed) ordinal = qstore_find(h->store, SMSG_QUOTE, symbuf, sym_len, epoch, seq);
  if (parsed && !ordinal && resume_from_redis(h, c, symbuf, sym_len, epoch, seq, since, n)) return;
  uint32_t *ids = calloc(c->nsubs ? c->nsubs : 1, sizeof(*ids));
  if (!ids) return;
  for (uint32_t k = 0; k < c->nsubs; k++) ids[k] = c->subs[k].sym;
  if (ordinal) {
    qstore_iter it;
    if (qstore_iter_init_ids(&it, h->store, SMSG_QUOTE, ids, c->nsubs, ordinal, uv_now(h->opts.loop)) == 0) {
      qstore_entry e;
      while (qstore_iter_next(&it, &e)) {
        send_entry(h, c, h->by_id[e.id], &e);   /* one of the client's symbols: the hub has it */
        replayed++;
      }
      qstore_iter_free(&it);
    } else {
      ordinal = 0;
    }
  }
  if (!ordinal)
    for (uint32_t k = 0; k < c->nsubs; k++) send_snapshot_of(h, c, h->by_id[ids[k]], 0);
  free(ids);
  send_recovery(h, c, ordinal != 0, since, n, replayed);
}

/* ---- topics -------------------------------------------------------------------- */

int hub_topic_add(td_hub *h, const char *name) {
  if (h->ntopics >= HUB_MAX_TOPICS) return -ENOSPC;
  h->topic_names[h->ntopics] = name;
  return h->ntopics++;
}

static int topic_id(const td_hub *h, const char *name) {
  for (int i = 0; i < h->ntopics; i++)
    if (!strcmp(h->topic_names[i], name)) return i;
  return -ENOENT;
}

int hub_set_topic(td_hub *h, hub_client *c, const char *name, bool on) {
  int id = topic_id(h, name);
  if (id < 0) return id;
  uint32_t bit = 1u << id;
  if (!(c->topics & bit) == !on) return 0;
  c->topics ^= bit;
  if (on) h->topic_listeners[id]++;
  else h->topic_listeners[id]--;
  return 0;
}

void hub_write_client_topics(const td_hub *h, const hub_client *c, jsonw *w, const char *key) {
  jw_array(w, key);
  for (int i = 0; i < h->ntopics; i++)
    if (c->topics & (1u << i)) jw_str(w, NULL, h->topic_names[i]);
  jw_end(w);
}

bool hub_topic_listened(const td_hub *h, int id) { return id >= 0 && id < h->ntopics && h->topic_listeners[id] > 0; }

void hub_topic_publish(td_hub *h, int id, const char *json, size_t len) {
  if (!hub_topic_listened(h, id)) return;
  wsd_variant v = wsd_variant_of(ws_frame_encode(WS_OP_TEXT, json, len));
  if (!v.plain) return;
  uint32_t bit = 1u << id;
  for (hub_client *c = h->clients, *next; c; c = next) {
    next = c->next;
    if ((c->topics & bit) && c->transport == HUB_WS) conn_send(c->conn, wsd_pick(&v, c->deflate_bits), 0);
  }
  wsd_variant_done(&v);
}
