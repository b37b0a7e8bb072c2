/* The hub: in-process fan-out of Redis channels to WebSocket and SSE
 * clients.
 *
 * One Redis SUBSCRIBE per symbol with local clients (reference counted: the
 * first client subscribes, the last one leaving unsubscribes). Each message
 * from Redis is encoded once per transport (a WebSocket frame, an SSE event)
 * into a shared td_buf and queued, by reference, on every client that wants
 * it. Slow clients are held to soft and hard output limits in the manner of
 * Redis's client-output-buffer-limit: past the soft limit only the newest
 * quote per symbol is kept; past the hard limit, or over the soft one for
 * too long, the client is closed.
 *
 * Message path: Redis -> subscriber.c -> hub_on_message -> quote store (for
 * history and recovery; another instance's messages only, this process's
 * were stored by the pipeline) -> fan_out -> conn_send on each client.
 *
 * Symbols are the quote store's ids (market/symtab.h): the hub's state of a
 * symbol is an array slot, and the conflation tag of its quotes is id + 1. */
#ifndef TD_HUB_H
#define TD_HUB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/buf.h"
#include "base/jsonw.h"
#include "base/td_limits.h"
#include "http/http.h"
#include "http/ws_deflate.h"

typedef struct td_hub td_hub;
struct td_subscriber;
struct qstore;

/* Topics: named broadcasts (not quotes) that WebSocket clients opt into,
 * such as the app's "tasks". A client's topics are a bit mask. */
#define HUB_MAX_TOPICS 8
/* Symbols that subscriptions may add to the shared symbol table before any
 * data named them. The rest of TD_MAX_SYMBOLS stays for the feeds, so
 * clients subscribing to made-up names cannot stop real quotes being kept. */
#define HUB_MAX_INTRODUCED_SYMBOLS (TD_MAX_SYMBOLS / 2)
/* Wildcards (stream/hub_wild.h): "*" or a symbol prefix and "*". Every
 * quote is matched against each pattern that has clients, so the process
 * holds few (one Redis PSUBSCRIBE each), and a client a handful. */
#define HUB_MAX_PATTERNS 32
#define HUB_MAX_CLIENT_PATTERNS 8
/* A client subscribing to a pattern gets the latest quote of at most this
 * many matching symbols the store holds (in the order the process first
 * saw them), then live quotes: a "*" snapshot stays a bounded burst. */
#define HUB_WILD_SNAPSHOT_MAX 1000
/* Overload: once the subscriber has read behind what Redis sends for this
 * long (every read event leaving bytes unread; the default of
 * --overload-behind-ms), every streaming client's unsent quotes are
 * conflated to the newest per symbol at each flush until it catches up.
 * Long enough that a backlog read within it (a burst) passes untouched;
 * short against the ~2 s after which Redis cuts a subscriber 32 MB behind
 * at 16 MB/s of quotes, which loses every client's quotes. */
#define HUB_BEHIND_MS 250
/* ...and it stays overloaded until the subscriber has kept up this long:
 * under a load it only just cannot carry, reading catches up within a
 * fraction of a second of conflating and falls behind again as soon as it
 * stops; one episode, not a state (and two log lines) per oscillation. */
#define HUB_OVERLOAD_HOLD_MS 2000

/* Access control belongs to the app (auth.c): sessions ask through this.
 * admit() checks a request and either answers it (401/403) and returns
 * false, or returns true with a grant that allows() is asked about for each
 * symbol and release() frees when the session ends. */
typedef struct {
  bool (*admit)(td_request *req, bool websocket, void **grant);
  bool (*allows)(const void *grant, const char *symbol);
  void (*release)(void *grant);
} td_stream_access;

/* What the stream layer is told by its caller; copied by hub_new. */
typedef struct {
  uv_loop_t *loop;
  const char *channel_prefix;     /* "quotes" -> quotes:AAPL */
  int max_stream_clients;
  int max_client_symbols;
  int history_size;
  int64_t client_soft_bytes;
  int64_t client_hard_bytes;
  int client_soft_ms;
  int overload_behind_ms;         /* HUB_BEHIND_MS unless configured */
  int64_t ws_max_message;
  int ping_interval_ms;
  int stream_idle_ms;
  const td_stream_access *access;
} td_hub_opts;

typedef enum { HUB_WS, HUB_SSE } hub_transport;
#define HUB_TRANSPORTS 2

/* What a session tells the hub when the hub must close it. */
typedef void (*hub_close_cb)(void *owner, int ws_code, const char *reason);

/* A client's subscription: the symbol, and where the client sits in that
 * symbol's array of clients of its transport (so leaving is O(1)). */
typedef struct {
  uint32_t sym;
  uint32_t pos;
} hub_sub;

/* Embedded in each WebSocket / SSE session; the hub's fields are private. */
typedef struct hub_client {
  td_conn *conn;
  hub_transport transport;
  void *owner;
  hub_close_cb close;
  hub_sub *subs;
  uint32_t nsubs, subs_cap;
  uint32_t topics;           /* bit i: topic i of hub_topic_add */
  uint8_t deflate_bits;      /* permessage-deflate: the client's server window (ws_deflate.h); 0: none */
  bool attached;
  uint64_t over_soft_since;  /* loop ms the client went over the soft limit; 0 once it caught up */
  uint64_t conflated;          /* quotes dropped for a newer one, for the slow-client log */
  uint32_t resuming;           /* resumes from Redis in flight (live quotes of their symbol held back) */
  struct hub_wild_sub *wild;   /* the client's patterns (hub_wild.c); NULL: none yet */
  uint32_t nwild;
  uint64_t wild_stamp;         /* the last pattern walk that reached it: one copy per message */
  uint8_t rate_group;          /* the client's interval group (hub_set_interval); 0: every quote */
  struct hub_client *prev, *next;
} hub_client;

typedef struct {
  uint64_t clients, ws_clients, sse_clients;
  uint64_t channels;           /* Redis channels subscribed */
  uint64_t client_subscriptions;
  uint64_t messages;           /* received from Redis */
  uint64_t deliveries;         /* messages queued to clients */
  uint64_t conflated;          /* dropped for a newer quote of the same symbol */
  uint64_t slow_closes;
  uint64_t overloads;          /* times the subscriber fell overload_behind_ms behind Redis (hub.c check_ingest) */
  bool overloaded;             /* it is behind now: every flush conflates */
  uint64_t rejected_clients;   /* over --max-stream-clients */
  uint64_t bad_messages;       /* Redis payloads refused as malformed: not one JSON object, or too large */
  uint64_t unpositioned;       /* Redis payloads without a position (another producer's), streamed and stored */
  uint64_t misfiled;           /* Redis payloads whose "S" is not their channel's symbol */
  uint64_t gaps;               /* sequence gaps seen on a channel */
  uint64_t replayed;           /* messages replayed to recovering clients */
  uint64_t refused_unknown;    /* subscribes refused: clients already brought HUB_MAX_INTRODUCED_SYMBOLS new symbols */
  uint64_t resumed_from_redis; /* resumes the cache could not serve, completed from the Redis stream */
  uint64_t patterns;           /* patterns with clients (one Redis PSUBSCRIBE each) */
  uint64_t pattern_subscriptions; /* client subscriptions to patterns */
  uint64_t pattern_deliveries; /* of deliveries, those a pattern brought */
  /* Per-client rate (hub_set_interval): */
  uint64_t rate_skipped[HUB_TRANSPORTS]; /* updates a throttled client never got: a newer one replaced them */
  uint64_t rate_frames_encoded;          /* frames encoded on interval ticks (one per transport, symbol and tick) */
  uint64_t rate_clients;                 /* clients with an interval */
  uint64_t rate_groups;                  /* distinct intervals in use */
} hub_stats;

/* Per-client rate: a client with an interval gets at most one update per
 * symbol per interval, the newest, on its interval group's tick (trailing
 * edge: a quote is at most one interval late, and the last of a burst is
 * always sent). 0 is every quote; otherwise HUB_RATE_MIN_MS to
 * HUB_RATE_MAX_MS. Below the minimum a tick does little more than the
 * loop's own coalescing of a turn's writes; past the maximum a price is
 * not live any more. Clients with the same interval share one timer and
 * one encoding per symbol and tick; at most HUB_RATE_MAX_GROUPS distinct
 * intervals are in use at once, which bounds the timers and the per-symbol
 * slots. */
#define HUB_RATE_MIN_MS 50
#define HUB_RATE_MAX_MS 60000
#define HUB_RATE_MAX_GROUPS 32
/* What a client is told when its interval is refused (WebSocket error,
 * SSE 400 / 503). */
#define HUB_STR_(x) #x
#define HUB_STR(x) HUB_STR_(x)
#define HUB_RATE_BAD_TEXT \
  "interval_ms is 0 (every quote) or an integer from " HUB_STR(HUB_RATE_MIN_MS) " to " HUB_STR(HUB_RATE_MAX_MS)
#define HUB_RATE_FULL_TEXT "too many distinct intervals are in use; try another one"

/* The store (and its symbol table) must outlive the hub. NULL on OOM. */
td_hub *hub_new(const td_hub_opts *opts, struct qstore *store);
const td_hub_opts *hub_opts(const td_hub *h);
void hub_set_subscriber(td_hub *h, struct td_subscriber *sub);
void hub_free(td_hub *h);
void hub_get_stats(const td_hub *h, hub_stats *out);

/* The candle subscriptions (stream/candle_fan.h), dropped with a client by
 * hub_detach; sessions reach them through the hub. NULL: none. */
struct candle_fan;
void hub_set_candles(td_hub *h, struct candle_fan *f);
struct candle_fan *hub_candles(const td_hub *h);

/* -EBUSY when --max-stream-clients are connected. */
int hub_attach(td_hub *h, hub_client *c, td_conn *conn, hub_transport t, void *owner, hub_close_cb close);
/* Unsubscribes everything; safe to call twice. */
void hub_detach(td_hub *h, hub_client *c);

/* The client's output queue is empty: it has caught up, so it is no longer
 * "over the soft limit". A client that conflates and never catches up is
 * closed after --client-soft-ms. */
void hub_client_drained(hub_client *c);

/* 1: subscribed now, 0: was already, -EINVAL bad symbol, -E2BIG the client
 * has --max-client-symbols, -ENOSPC the symbol table is full (TD_MAX_SYMBOLS)
 * or subscriptions already brought HUB_MAX_INTRODUCED_SYMBOLS symbols the
 * data had not (counted in refused_unknown). `sym` may be a pattern, "*" or
 * a prefix and "*" (hub_wild.h): then -E2BIG means HUB_MAX_CLIENT_PATTERNS
 * and -ENOSPC HUB_MAX_PATTERNS; with an interval, the client gets each
 * matching symbol on its group's tick. hub_unsubscribe, hub_write_client_symbols
 * and hub_send_snapshot take patterns too. */
int hub_subscribe(td_hub *h, hub_client *c, const char *sym, size_t n);
/* Sets the client's interval (ms) for all its symbols, present and
 * future: 0, or -EINVAL outside 0 and HUB_RATE_MIN_MS..HUB_RATE_MAX_MS,
 * -ENOSPC when HUB_RATE_MAX_GROUPS other intervals are in use, -ENOMEM.
 * It applies to the client's patterns too. */
int hub_set_interval(td_hub *h, hub_client *c, int64_t ms);
/* The client's interval in ms; 0: every quote. */
uint32_t hub_client_interval(const td_hub *h, const hub_client *c);
/* The interval groups with their counters, as a JSON array (member `key`). */
void hub_write_rate_groups(const td_hub *h, jsonw *w, const char *key);

/* 1: unsubscribed, 0: was not subscribed. */
int hub_unsubscribe(td_hub *h, hub_client *c, const char *sym, size_t n);
/* The client's symbols as a JSON array (member `key` of the open object, or
 * a value when key is NULL). */
void hub_write_client_symbols(const td_hub *h, const hub_client *c, jsonw *w, const char *key);

/* After subscribing: the latest quote of each of `syms` (or up to `history`
 * recent ones, as a "history" message for WebSocket), then live quotes. */
void hub_send_snapshot(td_hub *h, hub_client *c, const char *const *syms, size_t n, int history);
/* Replays what the client missed since the position "SYMBOL:epoch:seq" over
 * all its symbols, and says whether that was complete ("recovered"). When
 * the position is unknown (too old, or another epoch), sends the snapshot
 * instead with "recovered": false. */
void hub_recover(td_hub *h, hub_client *c, const char *since, size_t n);
/* Positions in Redis: a position the memory history cannot serve is read
 * from the channel's Redis stream (market/history_redis.h), asynchronously;
 * the replay, then `recovery`, follow the answer. The reader must outlive
 * the hub's clients. NULL (the default): memory only. */
struct hr_reader;
void hub_set_history(td_hub *h, struct hr_reader *history);

/* Callbacks for subscriber.c. hub_on_message_id takes the symbol id the
 * subscriber found for a quote channel <channel_prefix>:<symbol> (the
 * subscriber's quote_prefix must be the hub's channel_prefix), so the
 * symbol is not looked up again; SYMTAB_NONE: looked up by name, as
 * hub_on_message does. */
void hub_on_message_id(void *hub, uint32_t id, const char *channel, size_t channel_len, const char *payload,
                       size_t payload_len);
void hub_on_message(void *hub, const char *channel, size_t channel_len, const char *payload, size_t payload_len);
void hub_on_subscriber_state(void *hub, bool ready, bool resubscribed);

/* When a client's first ping (WebSocket) or keep-alive comment (SSE) is
 * due: somewhere in the second half of `interval`, spread by connection, so
 * that clients which connected together (after a restart, or a benchmark's
 * 10,000) are not all pinged in the same second of every interval. */
uint64_t hub_first_ping_ms(const hub_client *c, uint64_t interval);

/* Registers a topic; returns its id, or -ENOSPC past HUB_MAX_TOPICS. */
int hub_topic_add(td_hub *h, const char *name);
/* Turns topic `name` on or off for a WebSocket client: 0, or -ENOENT for
 * a name that was never registered. */
int hub_set_topic(td_hub *h, hub_client *c, const char *name, bool on);
/* The client's topics as a JSON array of names, written like the symbols. */
void hub_write_client_topics(const td_hub *h, const hub_client *c, jsonw *w, const char *key);
/* Whether any client listens to topic `id`: the caller skips encoding
 * messages nobody would get. */
bool hub_topic_listened(const td_hub *h, int id);
/* Sends the JSON text `json` as a text frame to every WebSocket client of
 * topic `id`. */
void hub_topic_publish(td_hub *h, int id, const char *json, size_t len);

/* A message of a channel the hub does not own (candle_fan's bars and
 * trades), encoded once by the caller for every client of one transport
 * (`v`: the WebSocket frame or the SSE event), queued on `c` under the
 * quotes' output limits: past the hard limit, or over the soft one for
 * --client-soft-ms, the client is closed; while over the soft limit its
 * quotes are conflated and, when `droppable` (a trade, an in-progress
 * bar: a newer one follows), this message is not queued. Not conflated
 * once queued. true when queued. */
bool hub_deliver(td_hub *h, hub_client *c, wsd_variant *v, bool droppable);

/* Sends a per-client message (an event, not a quote): a text frame for
 * WebSocket, `event: <type>` + data for SSE. */
void hub_send_text(td_hub *h, hub_client *c, const char *type, const char *json, size_t len);
/* `w` holds an open object with the message's members: adds "type" (WebSocket),
 * closes it, sends it and frees `w`. */
void hub_send_json(td_hub *h, hub_client *c, const char *type, jsonw *w);

#endif
