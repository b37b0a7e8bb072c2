/* hub with real connections: clients are attached by a test route that
 * takes its connection over (as ws_session and sse do), and quotes arrive
 * through hub_on_message as the subscriber hands them over, with payloads
 * encoded as the pipeline encodes them. Fan-out to WebSocket and SSE,
 * subscription limits, snapshots and history, recovery from a position,
 * gaps, topics, and the slow-client soft and hard limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/log.h"
#include "stream_fixture.h"

#define MAX_OWNERS 4

typedef struct {
  hub_client hc;
  td_conn *conn;
  int hub_close_code;
  int drains;
} towner;

static struct {
  sfx_env env;
  towner owners[MAX_OWNERS];
  int nowners;
} T;

static void own_drain(void *o) {
  towner *w = o;
  w->drains++;
  hub_client_drained(&w->hc);
}
static void own_close(void *o, const char *reason) {
  towner *w = o;
  hub_detach(T.env.hub, &w->hc);
  w->conn = NULL;
}
static const td_stream_ops own_ops = {NULL, own_drain, own_close};

static void on_hub_close(void *o, int code, const char *reason) {
  towner *w = o;
  w->hub_close_code = code;
  conn_close(w->conn, reason);
}

/* GET /attach?t=ws|sse: a client of the hub on this connection. */
static void h_attach(td_request *req) {
  char t[8] = "";
  http_query_param(req, "t", t, sizeof(t));
  hub_transport tr = strcmp(t, "sse") ? HUB_WS : HUB_SSE;
  towner *w = &T.owners[T.nowners];
  if (T.nowners == MAX_OWNERS || hub_attach(T.env.hub, &w->hc, req->conn, tr, w, on_hub_close) != 0) {
    http_error(req, 503, "too_many_clients", NULL, NULL);
    return;
  }
  T.nowners++;
  w->conn = req->conn;
  if (tr == HUB_WS) http_respond_stream(req, 101, NULL, "Upgrade: websocket\r\nConnection: Upgrade\r\n", &own_ops, w);
  else http_respond_stream(req, 200, "text/event-stream", NULL, &own_ops, w);
}

static const td_route routes[] = {{ROUTE_GET, "/attach", h_attach, "attach"}};

/* What hub_write_client_symbols/topics write, read back as a jansson array. */
static json_t *client_list(void (*write)(const td_hub *, const hub_client *, jsonw *, const char *), hub_client *c) {
  jsonw w;
  jw_init(&w, 0);
  write(T.env.hub, c, &w, NULL);
  json_t *a = w.failed ? NULL : json_loadb(w.p, w.len, 0, NULL);
  jw_free(&w);
  return a;
}

static void start_with(td_hub_opts o) {
  memset(&T, 0, sizeof(T));
  assert_int_equal(sfx_start(&T.env, o, routes, 1), 0);
}

static void start(void) {
  td_hub_opts o = sfx_hub_opts(NULL);
  o.max_stream_clients = 3;
  start_with(o);
}

static void stop(void) { assert_true(sfx_stop(&T.env)); }

/* Connects a client of transport `t` ("ws" or "sse"); returns its owner. */
static towner *attach(hcli *c, const char *t) {
  int before = T.nowners;
  assert_int_equal(hcli_open(c, server_port(T.env.server)), 0);
  char req[128];
  snprintf(req, sizeof(req), "GET /attach?t=%s HTTP/1.1\r\nHost: t\r\n\r\n", t);
  hcli_send(c, req);
  assert_true(hcli_wait_bytes(&T.env.loop, c, "\r\n\r\n"));
  assert_int_equal(T.nowners, before + 1);
  return &T.owners[before];
}

static void sub(towner *w, const char *sym) { assert_true(hub_subscribe(T.env.hub, &w->hc, sym, strlen(sym)) >= 0); }

static uint64_t data_seq(json_t *o) { return (uint64_t)json_integer_value(json_object_get(json_object_get(o, "data"), "seq")); }

/* The position a quote carries: "SYM:<epoch>:<seq>". */
static void position(char *out, size_t n, const char *sym, uint64_t seq) {
  snprintf(out, n, "%s:%s:%llu", sym, qstore_epoch_hex(T.env.store), (unsigned long long)seq);
}

/* One message is encoded once per transport and reaches exactly the
 * clients of its symbol: a WebSocket envelope, an SSE event. */
static void fan_out_to_ws_and_sse(void **state) {
  start();
  hcli a, b, c;
  towner *wa = attach(&a, "ws"), *wb = attach(&b, "sse"), *wc = attach(&c, "ws");
  sub(wa, "AAPL");
  sub(wb, "AAPL");
  sub(wc, "MSFT");
  sfx_publish(T.env.hub, T.env.store, "AAPL", 1, 100);
  sfx_publish(T.env.hub, T.env.store, "MSFT", 1, 200);
  sfx_publish(T.env.hub, T.env.store, "AAPL", 2, 101);
  hub_on_message(T.env.hub, "quotes:ZZZ", 10, "{}", 2);            /* nobody's symbol: ignored */
  hub_on_message(T.env.hub, "quotes:AAPL", 11, "{\"x\":1}", 7);   /* no position and no "S": refused */

  sfx_ws wsa, wsc;
  sfx_ws_init(&wsa, &a);
  sfx_ws_init(&wsc, &c);
  assert_true(sfx_ws_wait(&T.env.loop, &wsa, 2));
  assert_true(sfx_ws_wait(&T.env.loop, &wsc, 1));
  assert_true(hcli_quiet(&T.env.loop, &c, 10));
  sfx_ws_pump(&wsc);
  assert_int_equal(wsc.nmsgs, 1);

  td_buf *p2 = sfx_quote(T.env.store, "AAPL", 2, 101);
  char pos[64], want[1024];
  position(pos, sizeof(pos), "AAPL", 2);
  snprintf(want, sizeof(want), "{\"type\":\"quote\",\"channel\":\"quotes:AAPL\",\"symbol\":\"AAPL\",\"id\":\"%s\",\"data\":%.*s}",
           pos, (int)p2->len, p2->data);
  assert_string_equal(wsa.msgs[1], want);
  json_t *m = sfx_ws_json(&wsc, 0);
  assert_string_equal(json_string_value(json_object_get(m, "symbol")), "MSFT");
  json_decref(m);

  snprintf(want, sizeof(want), "id: %s\nevent: quote\ndata: %.*s\n\n", pos, (int)p2->len, p2->data);
  assert_true(hcli_wait_bytes(&T.env.loop, &b, want));
  position(pos, sizeof(pos), "AAPL", 1);
  assert_non_null(strstr(b.buf, pos));
  assert_null(strstr(b.buf, "MSFT"));
  buf_unref(p2);

  hub_stats st;
  hub_get_stats(T.env.hub, &st);
  assert_int_equal(st.messages, 4);
  assert_int_equal(st.misfiled, 1);
  assert_int_equal(st.bad_messages, 0);
  assert_int_equal(st.deliveries, 5);
  assert_int_equal(st.channels, 2);
  assert_int_equal(st.ws_clients, 2);
  assert_int_equal(st.sse_clients, 1);
  qstore_entry e;
  assert_true(qstore_latest(T.env.store, SMSG_QUOTE, "AAPL", 4, &e));
  assert_int_equal(e.seq, 2);

  /* after unsubscribing, AAPL reaches only the SSE client */
  assert_int_equal(hub_unsubscribe(T.env.hub, &wa->hc, "AAPL", 4), 1);
  assert_int_equal(hub_unsubscribe(T.env.hub, &wa->hc, "AAPL", 4), 0);
  sfx_publish(T.env.hub, T.env.store, "AAPL", 3, 102);
  position(pos, sizeof(pos), "AAPL", 3);
  assert_true(hcli_wait_bytes(&T.env.loop, &b, pos));
  assert_true(hcli_quiet(&T.env.loop, &a, 10));
  sfx_ws_pump(&wsa);
  assert_int_equal(wsa.nmsgs, 2);
  sfx_ws_free(&wsa);
  sfx_ws_free(&wsc);
  hcli_close(&a);
  hcli_close(&b);
  hcli_close(&c);
  assert_true(hfx_wait_open(&T.env.loop, 0));
  stop();
}

static void other(const char *channel, const char *payload) {
  hub_on_message(T.env.hub, channel, strlen(channel), payload, strlen(payload));
}

/* Another producer's message has no position: it reaches every client
 * without an id, is the latest quote and part of history and replay,
 * and the publisher's sequence goes on around it without a gap. Malformed
 * and misfiled ones are refused and counted. */
static void other_producers(void **state) {
  start();
  hcli a, b, c;
  towner *wa = attach(&a, "ws"), *wb = attach(&b, "sse");
  sub(wa, "AAPL");
  sub(wb, "AAPL");
  sfx_publish(T.env.hub, T.env.store, "AAPL", 1, 100);
  /* a pretty-printed line break must not end the SSE data: line */
  other("quotes:AAPL", "{\"T\":\"q\",\n\"S\":\"AAPL\",\"bp\":1,\"ap\":2,\"t\":\"2030-01-01T00:00:00Z\"}");
  const char *flat = "{\"T\":\"q\", \"S\":\"AAPL\",\"bp\":1,\"ap\":2,\"t\":\"2030-01-01T00:00:00Z\"}";
  other("quotes:AAPL", "[1,2]");
  other("quotes:AAPL", "{\"S\":\"AAPL\"");
  other("quotes:AAPL", "{\"S\":\"AAPL\",\"S\":\"MSFT\"}");   /* duplicate keys: malformed */
  other("quotes:AAPL", "{\"T\":\"q\",\"S\":\"MSFT\",\"bp\":1}");   /* misfiled */
  other("quotes:AAPL", "{\"T\":\"q\",\"bp\":1}");               /* no "S": misfiled */
  sfx_publish(T.env.hub, T.env.store, "AAPL", 2, 102);

  sfx_ws ws;
  sfx_ws_init(&ws, &a);
  assert_true(sfx_ws_wait(&T.env.loop, &ws, 3));
  char want[512];
  snprintf(want, sizeof(want), "{\"type\":\"quote\",\"channel\":\"quotes:AAPL\",\"symbol\":\"AAPL\",\"data\":%s}", flat);
  assert_string_equal(ws.msgs[1], want);
  json_t *m2 = sfx_ws_json(&ws, 2);
  assert_int_equal(data_seq(m2), 2);   /* no recovery message in between */
  json_decref(m2);
  snprintf(want, sizeof(want), "\n\nevent: quote\ndata: %s\n\nid: ", flat);
  char pos[64];
  position(pos, sizeof(pos), "AAPL", 2);
  assert_true(hcli_wait_bytes(&T.env.loop, &b, pos));
  assert_non_null(strstr(b.buf, want));

  hub_stats st;
  hub_get_stats(T.env.hub, &st);
  assert_int_equal(st.unpositioned, 1);
  assert_int_equal(st.bad_messages, 3);
  assert_int_equal(st.misfiled, 2);
  assert_int_equal(st.gaps, 0);
  assert_int_equal(st.deliveries, 6);

  /* the latest: across epochs (and a message without a position is of
   * none) the time "t" decides, and 2030 is later than seq 2's */
  qstore_entry e;
  assert_true(qstore_latest(T.env.store, SMSG_QUOTE, "AAPL", 4, &e));
  assert_int_equal(e.seq, QSTORE_NO_POSITION);
  /* a replay from seq 1 includes it, without an id */
  towner *wc = attach(&c, "ws");
  sub(wc, "AAPL");
  position(pos, sizeof(pos), "AAPL", 1);
  hub_recover(T.env.hub, &wc->hc, pos, strlen(pos));
  sfx_ws wsc;
  sfx_ws_init(&wsc, &c);
  assert_true(sfx_ws_wait(&T.env.loop, &wsc, 3));
  assert_string_equal(wsc.msgs[0], ws.msgs[1]);
  json_t *rec = sfx_ws_json(&wsc, 2);
  assert_int_equal(json_integer_value(json_object_get(rec, "replayed")), 2);
  json_decref(rec);
  sfx_ws_free(&ws);
  sfx_ws_free(&wsc);
  hcli_close(&a);
  hcli_close(&b);
  hcli_close(&c);
  assert_true(hfx_wait_open(&T.env.loop, 0));
  stop();
}

static void subscription_limits(void **state) {
  start();
  hcli a, b, c, d;
  towner *wa = attach(&a, "ws");
  attach(&b, "ws");
  attach(&c, "sse");
  assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, "bad sym", 7), -EINVAL);
  assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, "AAPL", 4), 1);
  assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, "AAPL", 4), 0);
  const char *more[] = {"MSFT", "BRK.B", "X"};
  for (int i = 0; i < 3; i++) assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, more[i], strlen(more[i])), 1);
  assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, "IBM", 3), -E2BIG);
  json_t *syms = client_list(hub_write_client_symbols, &wa->hc);
  assert_int_equal(json_array_size(syms), 4);
  json_decref(syms);
  /* a fourth client is over max_stream_clients (3) */
  assert_int_equal(hcli_open(&d, server_port(T.env.server)), 0);
  hcli_send(&d, "GET /attach?t=ws HTTP/1.1\r\nHost: t\r\n\r\n");
  hresp r[HCLI_MAX_RESPONSES];
  assert_true(hcli_wait(&T.env.loop, &d, 1, r));
  assert_int_equal(r[0].status, 503);
  hub_stats st;
  hub_get_stats(T.env.hub, &st);
  assert_int_equal(st.rejected_clients, 1);
  assert_int_equal(st.client_subscriptions, 4);
  hcli_close(&a);
  hcli_close(&b);
  hcli_close(&c);
  hcli_close(&d);
  assert_true(hfx_wait_open(&T.env.loop, 0));
  stop();
}

/* Subscriptions share the symbol table with the store, but may add at most
 * HUB_MAX_INTRODUCED_SYMBOLS names the data has not brought: after that a
 * made-up name is refused and counted, a known one still subscribes, and
 * the store can still take new symbols from the feed. */
static void made_up_symbols_leave_room_for_data(void **state) {
  td_hub_opts o = sfx_hub_opts(NULL);
  o.max_client_symbols = HUB_MAX_INTRODUCED_SYMBOLS + 8;
  start_with(o);
  sfx_store(&T.env, "AAPL", 1, 100);
  hcli a;
  towner *wa = attach(&a, "ws");
  char name[TD_SYMBOL_MAX + 1];
  for (int i = 0; i < HUB_MAX_INTRODUCED_SYMBOLS; i++) {
    snprintf(name, sizeof(name), "Z%X", i);
    assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, name, strlen(name)), 1);
  }
  assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, "ONEMORE", 7), -ENOSPC);
  assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, "AAPL", 4), 1);
  hub_stats st;
  hub_get_stats(T.env.hub, &st);
  assert_int_equal(st.refused_unknown, 1);
  uint32_t id;
  assert_int_equal(qstore_intern(T.env.store, "MSFT", 4, &id), 0);
  hcli_close(&a);
  assert_true(hfx_wait_open(&T.env.loop, 0));
  stop();
}

/* A late subscriber gets the latest quote, or the last N as one "history"
 * message (WebSocket) or N events (SSE). */
static void snapshots(void **state) {
  start();
  hcli a, b, c;
  towner *wa = attach(&a, "ws");
  sub(wa, "AAPL");
  for (uint64_t s = 1; s <= 5; s++) sfx_publish(T.env.hub, T.env.store, "AAPL", s, 100 + (double)s);
  towner *wb = attach(&b, "ws"), *wc = attach(&c, "sse");
  sub(wb, "AAPL");
  sub(wc, "AAPL");
  const char *syms[] = {"AAPL", "NONE"};
  hub_send_snapshot(T.env.hub, &wb->hc, syms, 2, 0);
  hub_send_snapshot(T.env.hub, &wb->hc, syms, 2, 3);
  hub_send_snapshot(T.env.hub, &wc->hc, syms, 2, 3);
  sfx_ws ws;
  sfx_ws_init(&ws, &b);
  assert_true(sfx_ws_wait(&T.env.loop, &ws, 2));
  json_t *latest = sfx_ws_json(&ws, 0), *hist = sfx_ws_json(&ws, 1);
  assert_string_equal(sfx_type(latest), "quote");
  assert_int_equal(data_seq(latest), 5);
  assert_string_equal(sfx_type(hist), "history");
  json_t *q = json_object_get(hist, "quotes");
  assert_int_equal(json_array_size(q), 3);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(json_integer_value(json_object_get(json_array_get(q, i), "seq")), 3 + i);
  json_decref(latest);
  json_decref(hist);
  char pos[64];
  position(pos, sizeof(pos), "AAPL", 5);
  assert_true(hcli_wait_bytes(&T.env.loop, &c, pos));
  position(pos, sizeof(pos), "AAPL", 3);
  assert_non_null(strstr(c.buf, pos));
  position(pos, sizeof(pos), "AAPL", 2);
  assert_null(strstr(c.buf, pos));
  assert_true(hcli_quiet(&T.env.loop, &b, 10));
  sfx_ws_pump(&ws);
  assert_int_equal(ws.nmsgs, 2);
  sfx_ws_free(&ws);
  hcli_close(&a);
  hcli_close(&b);
  hcli_close(&c);
  assert_true(hfx_wait_open(&T.env.loop, 0));
  stop();
}

/* From a known position the client gets what followed it; from an unknown
 * one, the snapshot, and "recovered": false either way says which. A gap in
 * the sequence that the store cannot fill is reported to the clients. */
static void recovery_and_gaps(void **state) {
  start();
  hcli a, b;
  towner *wa = attach(&a, "ws");
  sub(wa, "AAPL");
  for (uint64_t s = 1; s <= 5; s++) sfx_publish(T.env.hub, T.env.store, "AAPL", s, 100 + (double)s);
  towner *wb = attach(&b, "ws");
  sub(wb, "AAPL");
  char pos[64];
  position(pos, sizeof(pos), "AAPL", 3);
  hub_recover(T.env.hub, &wb->hc, pos, strlen(pos));
  hub_recover(T.env.hub, &wb->hc, "AAPL:00000000000000ff:3", 23);
  sfx_ws ws;
  sfx_ws_init(&ws, &b);
  assert_true(sfx_ws_wait(&T.env.loop, &ws, 5));
  json_t *m[5];
  for (int i = 0; i < 5; i++) m[i] = sfx_ws_json(&ws, i);
  assert_int_equal(data_seq(m[0]), 4);
  assert_int_equal(data_seq(m[1]), 5);
  assert_string_equal(sfx_type(m[2]), "recovery");
  assert_true(json_is_true(json_object_get(m[2], "recovered")));
  assert_int_equal(json_integer_value(json_object_get(m[2], "replayed")), 2);
  assert_int_equal(data_seq(m[3]), 5); /* the snapshot */
  assert_true(json_is_false(json_object_get(m[4], "recovered")));
  for (int i = 0; i < 5; i++) json_decref(m[i]);

  /* seq 6 and 7 never came: the clients hear of it before seq 8 */
  sfx_publish(T.env.hub, T.env.store, "AAPL", 8, 108);
  assert_true(sfx_ws_wait(&T.env.loop, &ws, 7));
  json_t *gap = sfx_ws_json(&ws, 5), *q8 = sfx_ws_json(&ws, 6);
  assert_string_equal(sfx_type(gap), "recovery");
  assert_true(json_is_false(json_object_get(gap, "recovered")));
  assert_int_equal(json_integer_value(json_object_get(gap, "missed_from")), 6);
  assert_int_equal(json_integer_value(json_object_get(gap, "missed_to")), 7);
  assert_int_equal(data_seq(q8), 8);
  json_decref(gap);
  json_decref(q8);
  hub_stats st;
  hub_get_stats(T.env.hub, &st);
  assert_int_equal(st.gaps, 1);
  assert_int_equal(st.replayed, 2);
  sfx_ws_free(&ws);
  hcli_close(&a);
  hcli_close(&b);
  assert_true(hfx_wait_open(&T.env.loop, 0));
  stop();
}

static void topics(void **state) {
  start();
  hcli a, b;
  towner *wa = attach(&a, "ws"), *wb = attach(&b, "sse");
  assert_int_equal(hub_topic_add(T.env.hub, "tasks"), 0);
  assert_int_equal(hub_topic_add(T.env.hub, "news"), 1);
  for (int i = 2; i < HUB_MAX_TOPICS; i++) assert_int_equal(hub_topic_add(T.env.hub, "more"), i);
  assert_int_equal(hub_topic_add(T.env.hub, "one too many"), -ENOSPC);
  assert_int_equal(hub_set_topic(T.env.hub, &wa->hc, "nope", true), -ENOENT);
  assert_false(hub_topic_listened(T.env.hub, 0));
  assert_int_equal(hub_set_topic(T.env.hub, &wa->hc, "tasks", true), 0);
  assert_int_equal(hub_set_topic(T.env.hub, &wa->hc, "tasks", true), 0); /* twice is once */
  assert_int_equal(hub_set_topic(T.env.hub, &wb->hc, "tasks", true), 0);
  assert_true(hub_topic_listened(T.env.hub, 0));
  assert_false(hub_topic_listened(T.env.hub, 1));
  json_t *names = client_list(hub_write_client_topics, &wa->hc);
  assert_int_equal(json_array_size(names), 1);
  assert_string_equal(json_string_value(json_array_get(names, 0)), "tasks");
  json_decref(names);
  const char *ev = "{\"type\":\"task\",\"id\":\"t1\"}";
  hub_topic_publish(T.env.hub, 0, ev, strlen(ev));
  hub_topic_publish(T.env.hub, 1, "{\"type\":\"news\"}", 15);
  sfx_ws ws;
  sfx_ws_init(&ws, &a);
  assert_true(sfx_ws_wait(&T.env.loop, &ws, 1));
  assert_string_equal(ws.msgs[0], ev);
  assert_true(hcli_quiet(&T.env.loop, &b, 10));
  assert_null(strstr(b.buf, "task")); /* topics are for WebSocket clients */
  assert_int_equal(hub_set_topic(T.env.hub, &wa->hc, "tasks", false), 0);
  assert_int_equal(hub_set_topic(T.env.hub, &wb->hc, "tasks", false), 0);
  assert_false(hub_topic_listened(T.env.hub, 0));
  hub_topic_publish(T.env.hub, 0, ev, strlen(ev));
  assert_true(hcli_quiet(&T.env.loop, &a, 10));
  sfx_ws_pump(&ws);
  assert_int_equal(ws.nmsgs, 1);
  /* a client that leaves while listening no longer counts */
  assert_int_equal(hub_set_topic(T.env.hub, &wa->hc, "news", true), 0);
  hcli_close(&a);
  assert_true(hfx_wait_open(&T.env.loop, 1));
  assert_false(hub_topic_listened(T.env.hub, 1));
  sfx_ws_free(&ws);
  hcli_close(&b);
  assert_true(hfx_wait_open(&T.env.loop, 0));
  stop();
}

static size_t payload_len(void) {
  qstore *qs = qstore_new(1, 1000, 1);
  td_buf *b = sfx_quote(qs, "AAPL", 1, 100);
  size_t n = b->len;
  buf_unref(b);
  qstore_free(qs);
  return n;
}

/* Past the soft limit, queued quotes of a symbol are replaced by its newest
 * one: the client gets fewer, in order, ending with the latest. */
static void soft_limit_conflates(void **state) {
  td_hub_opts o = sfx_hub_opts(NULL);
  o.client_soft_bytes = (int64_t)(2 * payload_len());
  start_with(o);
  hcli a;
  towner *wa = attach(&a, "ws");
  sub(wa, "AAPL");
  /* all in one loop iteration: nothing is written in between */
  for (uint64_t s = 1; s <= 10; s++) sfx_publish(T.env.hub, T.env.store, "AAPL", s, 100 + (double)s);
  sfx_ws ws;
  sfx_ws_init(&ws, &a);
  hfx_want last = {&a, 0, "\"seq\":10,"};
  assert_true(rfx_run_until(&T.env.loop, hfx_has_bytes, &last, HFX_WAIT_MS));
  sfx_ws_pump(&ws);
  hub_stats st;
  hub_get_stats(T.env.hub, &st);
  assert_true(ws.nmsgs < 10);
  assert_int_equal(st.conflated, 10 - (uint64_t)ws.nmsgs);
  assert_int_equal(st.deliveries, 10);
  uint64_t prev = 0;
  for (int i = 0; i < ws.nmsgs; i++) {
    json_t *m = sfx_ws_json(&ws, i);
    assert_true(data_seq(m) > prev);
    prev = data_seq(m);
    json_decref(m);
  }
  assert_int_equal(prev, 10);
  assert_true(wa->drains >= 1); /* it caught up: no longer over the soft limit */
  assert_int_equal(st.slow_closes, 0);
  sfx_ws_free(&ws);
  hcli_close(&a);
  assert_true(hfx_wait_open(&T.env.loop, 0));
  stop();
}

static void publish_round(int round) {
  const char *syms[] = {"AAPL", "MSFT", "IBM", "TSLA"};
  for (int i = 0; i < 4; i++) sfx_publish(T.env.hub, T.env.store, syms[i], (uint64_t)round, 100);
}

/* Over the soft limit for longer than client_soft_ms without catching up:
 * closed with 1008. A client that caught up in between is not. */
static void soft_limit_too_long(void **state) {
  td_hub_opts o = sfx_hub_opts(NULL);
  o.client_soft_bytes = (int64_t)(2 * payload_len());
  o.client_soft_ms = 30;
  start_with(o);
  hcli a;
  towner *wa = attach(&a, "ws");
  const char *syms[] = {"AAPL", "MSFT", "IBM", "TSLA"};
  for (int i = 0; i < 4; i++) sub(wa, syms[i]);
  sfx_ws ws;
  sfx_ws_init(&ws, &a);
  publish_round(1); /* distinct symbols: nothing to conflate, over the soft limit */
  assert_true(sfx_ws_wait(&T.env.loop, &ws, 4));
  assert_int_equal(wa->drains, 1);
  rfx_sleep_ms(40);
  uv_update_time(&T.env.loop);
  publish_round(2); /* caught up in between: a new period starts */
  assert_true(sfx_ws_wait(&T.env.loop, &ws, 8));
  hub_stats st;
  hub_get_stats(T.env.hub, &st);
  assert_int_equal(st.slow_closes, 0);

  publish_round(3);
  rfx_sleep_ms(40);
  uv_update_time(&T.env.loop); /* the loop never ran: the queue is as it was */
  publish_round(4);
  assert_int_equal(wa->hub_close_code, WS_CLOSE_POLICY);
  hub_get_stats(T.env.hub, &st);
  assert_int_equal(st.slow_closes, 1);
  assert_true(hcli_wait_eof(&T.env.loop, &a));
  sfx_ws_free(&ws);
  hcli_close(&a);
  stop();
}

/* Over the hard limit: closed at once. */
static void hard_limit(void **state) {
  td_hub_opts o = sfx_hub_opts(NULL);
  o.client_hard_bytes = (int64_t)(3 * payload_len());
  start_with(o);
  hcli a, b;
  towner *wa = attach(&a, "ws"), *wb = attach(&b, "sse");
  const char *syms[] = {"AAPL", "MSFT", "IBM", "TSLA"};
  for (int i = 0; i < 4; i++) sub(wa, syms[i]);
  sub(wb, "AAPL");
  publish_round(1);
  assert_int_equal(wa->hub_close_code, WS_CLOSE_POLICY);
  assert_int_equal(wb->hub_close_code, 0);
  hub_stats st;
  hub_get_stats(T.env.hub, &st);
  assert_int_equal(st.slow_closes, 1);
  assert_int_equal(st.clients, 1);
  assert_true(hcli_wait_eof(&T.env.loop, &a));
  assert_true(hcli_wait_bytes(&T.env.loop, &b, "event: quote"));
  hcli_close(&a);
  hcli_close(&b);
  assert_true(hfx_wait_open(&T.env.loop, 0));
  stop();
}

/* Patterns: each message once per client, however many of its
 * subscriptions match; a gap in a symbol nobody named reaches the pattern's
 * clients too; the client's list, limits and unsubscribe. */
static void wildcards_deliver_once(void **state) {
  start();
  hcli a, b, c;
  towner *wa = attach(&a, "ws"), *wb = attach(&b, "sse"), *wc = attach(&c, "ws");
  sub(wa, "AAPL");
  sub(wa, "*");
  sub(wa, "A*");
  sub(wb, "BRK.*");
  sub(wc, "AAPL");
  assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, "A*", 2), 0);
  assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, "A*B", 3), -EINVAL);
  assert_int_equal(hub_subscribe(T.env.hub, &wa->hc, "a*", 2), -EINVAL);
  json_t *list = client_list(hub_write_client_symbols, &wa->hc);
  assert_int_equal(json_array_size(list), 3);
  assert_string_equal(json_string_value(json_array_get(list, 2)), "A*");
  json_decref(list);

  sfx_publish(T.env.hub, T.env.store, "AAPL", 1, 100);   /* wa: named + two patterns; wc */
  sfx_publish(T.env.hub, T.env.store, "BRK.A", 1, 200);  /* wa: *; wb: BRK.* */
  sfx_publish(T.env.hub, T.env.store, "AMZN", 1, 300);   /* wa: * and A* */
  sfx_publish(T.env.hub, T.env.store, "AMZN", 3, 301);   /* a gap: a notice, then the quote */
  sfx_ws wsa, wsc;
  sfx_ws_init(&wsa, &a);
  sfx_ws_init(&wsc, &c);
  assert_true(sfx_ws_wait(&T.env.loop, &wsa, 5));
  assert_true(hcli_quiet(&T.env.loop, &a, 20));
  sfx_ws_pump(&wsa);
  assert_int_equal(wsa.nmsgs, 5);
  static const char *const want[] = {"AAPL", "BRK.A", "AMZN", NULL, "AMZN"};
  for (int i = 0; i < 5; i++) {
    json_t *m = sfx_ws_json(&wsa, i);
    const char *type = json_string_value(json_object_get(m, "type"));
    assert_string_equal(type, want[i] ? "quote" : "recovery");
    if (want[i]) assert_string_equal(json_string_value(json_object_get(m, "symbol")), want[i]);
    json_decref(m);
  }
  assert_true(sfx_ws_wait(&T.env.loop, &wsc, 1));
  assert_true(hcli_wait_bytes(&T.env.loop, &b, "BRK.A"));
  assert_true(hcli_quiet(&T.env.loop, &b, 10));
  assert_null(strstr(b.buf, "AAPL"));
  hub_stats st;
  hub_get_stats(T.env.hub, &st);
  assert_int_equal(st.patterns, 3);
  assert_int_equal(st.pattern_subscriptions, 3);
  assert_int_equal(st.pattern_deliveries, 4);   /* wa: BRK.A, AMZN twice; wb: BRK.A */
  assert_int_equal(st.deliveries, 6);
  assert_int_equal(st.gaps, 1);

  /* Eight patterns a client at most; unsubscribing a pattern. */
  char p[16]; /* "P" + an int + "*": room for any int, as -Wformat-truncation under -O1 asks */
  for (int i = 0; i < HUB_MAX_CLIENT_PATTERNS - 1; i++) {
    snprintf(p, sizeof(p), "P%d*", i);
    assert_int_equal(hub_subscribe(T.env.hub, &wb->hc, p, strlen(p)), 1);
  }
  assert_int_equal(hub_subscribe(T.env.hub, &wb->hc, "Q*", 2), -E2BIG);
  assert_int_equal(hub_unsubscribe(T.env.hub, &wa->hc, "*", 1), 1);
  assert_int_equal(hub_unsubscribe(T.env.hub, &wa->hc, "*", 1), 0);
  sfx_publish(T.env.hub, T.env.store, "MSFT", 1, 400);   /* nobody's now */
  sfx_publish(T.env.hub, T.env.store, "AMZN", 4, 302);   /* wa through A* */
  assert_true(sfx_ws_wait(&T.env.loop, &wsa, 6));
  assert_true(hcli_quiet(&T.env.loop, &a, 20));
  sfx_ws_pump(&wsa);
  assert_int_equal(wsa.nmsgs, 6);
  sfx_ws_free(&wsa);
  sfx_ws_free(&wsc);
  hcli_close(&a);
  hcli_close(&b);
  hcli_close(&c);
  stop();
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(fan_out_to_ws_and_sse), cmocka_unit_test(other_producers),
      cmocka_unit_test(subscription_limits),   cmocka_unit_test(made_up_symbols_leave_room_for_data),
      cmocka_unit_test(snapshots),             cmocka_unit_test(recovery_and_gaps),
      cmocka_unit_test(topics),                cmocka_unit_test(soft_limit_conflates),
      cmocka_unit_test(soft_limit_too_long),   cmocka_unit_test(hard_limit),
      cmocka_unit_test(wildcards_deliver_once),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  buf_pool_release();
  log_close();
  return rc;
}
