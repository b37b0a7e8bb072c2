/* Stream tests (hub, ws_session, sse): a hub over a real quote store, an
 * access table whose rules come from the request (so each test says what
 * it allows), quote payloads made the way the pipeline makes them
 * (smsg_parse_batch + smsg_encode with the store's epoch and the next
 * seq), and a client-side WebSocket reader over an hcli. */
#ifndef TD_STREAM_FIXTURE_H
#define TD_STREAM_FIXTURE_H

#include "http/ws_frame.h"
#include "http_fixture.h"
#include "market/quote_store.h"
#include "market/stream_msg.h"
#include "stream/hub.h"

#define SFX_MAX_MSGS 64
#define SFX_HISTORY 16

/* ---- access control from the request -------------------------------------- */

/* "X-Deny: 1" is refused with 401; "X-Allow: AAPL,MSFT" limits the symbols
 * (no header: every symbol). The grant is a heap copy of the list, so that
 * LeakSanitizer sees a grant that is never released. */
static struct {
  int admits, refusals, releases;
} sfx_access_counts;

static bool sfx_admit(td_request *req, bool websocket, void **grant) {
  if (http_header(req, "x-deny")) {
    sfx_access_counts.refusals++;
    http_error(req, 401, "unauthorized", "the test table refuses this request", NULL);
    return false;
  }
  const td_header *allow = http_header(req, "x-allow");
  char *g = allow ? strndup(allow->value, allow->value_len) : strdup("*");
  *grant = g;
  sfx_access_counts.admits++;
  return g != NULL;
}

static bool sfx_allows(const void *grant, const char *symbol) {
  const char *list = grant;
  if (!strcmp(list, "*")) return true;
  size_t n = strlen(symbol);
  for (const char *p = list; (p = strstr(p, symbol)); p += n)
    if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return true;
  return false;
}

static void sfx_release(void *grant) {
  sfx_access_counts.releases++;
  free(grant);
}

static const td_stream_access sfx_access = {sfx_admit, sfx_allows, sfx_release};

static inline td_hub_opts sfx_hub_opts(uv_loop_t *loop) {
  return (td_hub_opts){.loop = loop, .channel_prefix = "quotes", .max_stream_clients = 8, .max_client_symbols = 4,
                       .history_size = SFX_HISTORY, .client_soft_bytes = 256 * 1024, .client_hard_bytes = 1024 * 1024,
                       .client_soft_ms = 10000, .ws_max_message = 4096, .ping_interval_ms = 25000,
                       .stream_idle_ms = 75000, .access = &sfx_access};
}

/* ---- payloads -------------------------------------------------------------- */

typedef struct {
  td_buf *out;
  uint64_t seq;
  const char *epoch;
} sfx_encode_ctx;

static inline void sfx_on_msg(void *ud, const smsg_msg *m) {
  sfx_encode_ctx *e = ud;
  e->out = smsg_encode(m, e->seq, e->epoch);
}

/* The payload the pipeline publishes for a quote of `sym` at `bp`. */
static inline td_buf *sfx_quote(qstore *qs, const char *sym, uint64_t seq, double bp) {
  char in[512], err[SMSG_ERR_MAX];
  snprintf(in, sizeof(in),
           "{\"T\":\"q\",\"S\":\"%s\",\"bx\":\"V\",\"bp\":%.2f,\"bs\":3,\"ax\":\"V\",\"ap\":%.2f,\"as\":1,"
           "\"t\":\"2026-11-21T20:00:00.123456789Z\"}",
           sym, bp, bp + 0.02);
  sfx_encode_ctx e = {NULL, seq, qstore_epoch_hex(qs)};
  if (smsg_parse_batch(in, strlen(in), sfx_on_msg, &e, err) != 1) return NULL;
  return e.out;
}

/* Delivers a quote to the hub as the pipeline and then the subscriber do:
 * stored (the pipeline stores what it publishes), then from "quotes:SYM". */
static inline void sfx_publish(td_hub *h, qstore *qs, const char *sym, uint64_t seq, double bp) {
  td_buf *b = sfx_quote(qs, sym, seq, bp);
  qstore_insert(qs, SMSG_QUOTE, sym, strlen(sym), b, qstore_epoch(qs), seq, uv_now(hub_opts(h)->loop));
  char ch[64];
  int n = snprintf(ch, sizeof(ch), "quotes:%s", sym);
  hub_on_message(h, ch, (size_t)n, b->data, b->len);
  buf_unref(b);
}

/* ---- the environment: loop, store, hub, server ---------------------------- */

typedef struct {
  uv_loop_t loop;
  qstore *store;
  td_hub *hub;
  td_server *server;
} sfx_env;

/* The hub runs on the environment's loop, whatever `o.loop` says. */
static inline int sfx_start(sfx_env *e, td_hub_opts o, const td_route *routes, int n_routes) {
  memset(&sfx_access_counts, 0, sizeof(sfx_access_counts));
  uv_loop_init(&e->loop);
  e->store = qstore_new(SFX_HISTORY, 300000, TD_MAX_SYMBOLS);
  o.loop = &e->loop;
  e->hub = hub_new(&o, e->store);
  td_server_opts so = hfx_opts(routes, n_routes, e);
  return server_start(&e->server, &e->loop, &so);
}

/* Shuts down; false when a client was still attached, a grant was not
 * released, a handle or a buffer was left. */
static inline bool sfx_stop(sfx_env *e) {
  if (!hfx_stop(&e->loop, e->server, 1000)) return false;
  hub_stats st;
  hub_get_stats(e->hub, &st);
  hub_free(e->hub);
  qstore_free(e->store);
  bool closed = rfx_loop_close(&e->loop);
  return closed && st.clients == 0 && sfx_access_counts.admits == sfx_access_counts.releases &&
         buf_live_count() == 0;
}

/* Stores a quote as the pipeline does (before anyone subscribed). */
static inline void sfx_store(sfx_env *e, const char *sym, uint64_t seq, double bp) {
  td_buf *b = sfx_quote(e->store, sym, seq, bp);
  qstore_insert(e->store, SMSG_QUOTE, sym, strlen(sym), b, qstore_epoch(e->store), seq, uv_now(&e->loop));
  buf_unref(b);
}

/* ---- a WebSocket client's reader ------------------------------------------ */

typedef struct {
  hcli *c;
  size_t fed;                     /* bytes of c->buf given to the parser */
  bool past_head;
  ws_parser parser;
  char *msgs[SFX_MAX_MSGS];       /* text messages, in order */
  int nmsgs;
  int close_code;                 /* 0 until a close frame arrived */
} sfx_ws;

static inline int sfx_ws_on_message(void *ud, ws_opcode op, const char *d, size_t n) {
  sfx_ws *w = ud;
  if (w->nmsgs < SFX_MAX_MSGS) w->msgs[w->nmsgs++] = strndup(d, n);
  return 0;
}
static inline int sfx_ws_on_close(void *ud, int code, const char *reason, size_t len) {
  ((sfx_ws *)ud)->close_code = code;
  return 0;
}
static const ws_callbacks sfx_ws_callbacks = {sfx_ws_on_message, NULL, NULL, sfx_ws_on_close};

static inline void sfx_ws_init(sfx_ws *w, hcli *c) {
  memset(w, 0, sizeof(*w));
  w->c = c;
  ws_parser_init(&w->parser, WS_ROLE_CLIENT, 1 << 20);
}

static inline void sfx_ws_free(sfx_ws *w) {
  for (int i = 0; i < w->nmsgs; i++) free(w->msgs[i]);
  w->nmsgs = 0;
  ws_parser_free(&w->parser);
}

/* Feeds what arrived after the 101 head to the frame parser. */
static inline void sfx_ws_pump(sfx_ws *w) {
  hcli_poll(w->c);
  if (!w->past_head) {
    const char *blank = hfx_memmem(w->c->buf, w->c->len, "\r\n\r\n");
    if (!blank) return;
    w->fed = (size_t)(blank + 4 - w->c->buf);
    w->past_head = true;
  }
  if (w->c->len > w->fed) {
    ws_parser_feed(&w->parser, w->c->buf + w->fed, w->c->len - w->fed, &sfx_ws_callbacks, w);
    w->fed = w->c->len;
  }
}

typedef struct {
  sfx_ws *w;
  int n;
} sfx_ws_want;

static inline bool sfx_ws_has(void *a) {
  sfx_ws_want *x = a;
  sfx_ws_pump(x->w);
  return x->w->nmsgs >= x->n;
}
static inline bool sfx_ws_closed(void *a) {
  sfx_ws_want *x = a;
  sfx_ws_pump(x->w);
  return x->w->close_code != 0 || x->w->c->eof;
}

/* Steps the loop until the client holds `n` messages. */
static inline bool sfx_ws_wait(uv_loop_t *loop, sfx_ws *w, int n) {
  sfx_ws_want x = {w, n};
  return rfx_run_until(loop, sfx_ws_has, &x, HFX_WAIT_MS);
}
static inline bool sfx_ws_wait_closed(uv_loop_t *loop, sfx_ws *w) {
  sfx_ws_want x = {w, 0};
  return rfx_run_until(loop, sfx_ws_closed, &x, HFX_WAIT_MS);
}

/* The handshake of RFC 6455 1.3, whose accept key is known. */
#define SFX_WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define SFX_WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
static inline void sfx_ws_handshake(hcli *c, const char *extra_headers) {
  char req[512];
  snprintf(req, sizeof(req),
           "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: " SFX_WS_KEY "\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
           extra_headers ? extra_headers : "");
  hcli_send(c, req);
}

/* Sends a text message as a client must: masked. */
static inline void sfx_ws_send(sfx_ws *w, const char *text) {
  td_buf *b = ws_frame_encode_masked(WS_OP_TEXT, text, strlen(text));
  hcli_sendn(w->c, b->data, b->len);
  buf_unref(b);
}

/* The JSON of message i, parsed (the caller decrefs), and its "type". */
static inline json_t *sfx_ws_json(const sfx_ws *w, int i) {
  return i < w->nmsgs ? json_loads(w->msgs[i], 0, NULL) : NULL;
}
static inline const char *sfx_type(json_t *o) { return json_string_value(json_object_get(o, "type")); }

#endif
