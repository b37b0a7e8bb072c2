/* sse over real requests: a server whose /stream route calls
 * sse_session_open on a hub with the test access table. The event stream
 * and its live quotes, the refusals (no symbols, a bad one, too many, one
 * the grant does not allow, a refused request), history and
 * Last-Event-ID, and a client that talks on an event stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/log.h"
#include "stream/ws_session.h"
#include "stream_fixture.h"

static sfx_env E;

static void h_stream(td_request *req) { sse_session_open(req, ((sfx_env *)req->user)->hub); }
static const td_route routes[] = {{ROUTE_GET, "/stream", h_stream, "stream"}};

static int setup(void **state) { return sfx_start(&E, sfx_hub_opts(NULL), routes, 1); }
static int teardown(void **state) { return sfx_stop(&E) ? 0 : -1; }

static void open_stream(hcli *c, const char *query, const char *headers) {
  assert_int_equal(hcli_open(c, server_port(E.server)), 0);
  char req[512];
  snprintf(req, sizeof(req), "GET /stream%s HTTP/1.1\r\nHost: t\r\n%s\r\n", query, headers ? headers : "");
  hcli_send(c, req);
}

static void done(hcli *c) {
  hcli_close(c);
  assert_true(hfx_wait_open(&E.loop, 0));
}

static void position(char *out, size_t n, const char *sym, uint64_t seq) {
  snprintf(out, n, "id: %s:%s:%llu\n", sym, qstore_epoch_hex(E.store), (unsigned long long)seq);
}

static void live_quotes(void **state) {
  hcli c;
  open_stream(&c, "?symbols=AAPL,MSFT", NULL);
  assert_true(hcli_wait_bytes(&E.loop, &c, "retry: 2000\n\n"));
  assert_int_equal(strncmp(c.buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n", 50), 0);
  assert_non_null(strstr(c.buf, "\r\nCache-Control: no-cache\r\n"));
  assert_null(strstr(c.buf, "Content-Length"));
  sfx_publish(E.hub, E.store, "MSFT", 1, 200);
  sfx_publish(E.hub, E.store, "IBM", 1, 150); /* not this client's */
  sfx_publish(E.hub, E.store, "AAPL", 7, 100);
  char pos[96];
  position(pos, sizeof(pos), "AAPL", 7);
  assert_true(hcli_wait_bytes(&E.loop, &c, pos));
  const char *msft = strstr(c.buf, "id: MSFT:"), *aapl = strstr(c.buf, pos);
  assert_non_null(msft);
  assert_true(msft < aapl);
  assert_non_null(strstr(aapl, "\nevent: quote\ndata: {\"T\":\"q\",\"S\":\"AAPL\","));
  assert_null(strstr(c.buf, "IBM"));
  hub_stats st;
  hub_get_stats(E.hub, &st);
  assert_int_equal(st.sse_clients, 1);
  assert_int_equal(st.client_subscriptions, 2);
  /* the grant is asked per symbol at the start and released at once */
  assert_int_equal(sfx_access_counts.releases, 1);
  done(&c);
}

static void refusals(void **state) {
  static const struct {
    const char *query, *headers;
    int status;
    const char *error;
  } cases[] = {
      {"", NULL, 400, "missing_symbols"},
      {"?symbols=", NULL, 400, "missing_symbols"},
      {"?symbols=AAPL,bad%20sym", NULL, 400, "bad_symbol"},
      {"?symbols=A,B,C,D,E", NULL, 400, "too_many_symbols"},
      {"?symbols=AAPL,MSFT", "X-Allow: AAPL\r\n", 403, "forbidden_symbol"},
      {"?symbols=AAPL", "X-Deny: 1\r\n", 401, "unauthorized"},
  };
  hresp r[HCLI_MAX_RESPONSES];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    hcli c;
    open_stream(&c, cases[i].query, cases[i].headers);
    assert_true(hcli_wait(&E.loop, &c, 1, r));
    assert_int_equal(r[0].status, cases[i].status);
    char want[64];
    snprintf(want, sizeof(want), "\"error\":\"%s\"", cases[i].error);
    assert_non_null(hfx_memmem(r[0].body, r[0].body_len, want));
    done(&c);
  }
  hub_stats st;
  hub_get_stats(E.hub, &st);
  assert_int_equal(st.clients, 0);
  assert_int_equal(st.client_subscriptions, 0); /* what a refused stream subscribed first is undone */
  assert_int_equal(st.channels, 0);
}

/* history=N sends the last N stored quotes; Last-Event-ID (header or
 * query) replays what followed that position. */
static void history_and_resume(void **state) {
  for (uint64_t s = 1; s <= 5; s++) sfx_store(&E, "AAPL", s, 100 + (double)s);
  char pos[96];
  hcli c;
  open_stream(&c, "?symbols=AAPL&history=2", NULL);
  position(pos, sizeof(pos), "AAPL", 5);
  assert_true(hcli_wait_bytes(&E.loop, &c, pos));
  position(pos, sizeof(pos), "AAPL", 4);
  assert_non_null(strstr(c.buf, pos));
  position(pos, sizeof(pos), "AAPL", 3);
  assert_null(strstr(c.buf, pos));
  done(&c);

  char hdr[96];
  snprintf(hdr, sizeof(hdr), "Last-Event-ID: AAPL:%s:3\r\n", qstore_epoch_hex(E.store));
  open_stream(&c, "?symbols=AAPL", hdr);
  assert_true(hcli_wait_bytes(&E.loop, &c, "event: recovery\ndata: {\"recovered\":true"));
  position(pos, sizeof(pos), "AAPL", 4);
  const char *four = strstr(c.buf, pos);
  position(pos, sizeof(pos), "AAPL", 5);
  const char *five = strstr(c.buf, pos);
  assert_non_null(four);
  assert_true(five > four);
  position(pos, sizeof(pos), "AAPL", 3);
  assert_null(strstr(c.buf, pos));
  done(&c);

  /* a position this store never had: the latest, and recovered false */
  open_stream(&c, "?symbols=AAPL&last_event_id=AAPL:00000000000000ff:3", NULL);
  assert_true(hcli_wait_bytes(&E.loop, &c, "\"recovered\":false"));
  position(pos, sizeof(pos), "AAPL", 5);
  assert_non_null(strstr(c.buf, pos));
  position(pos, sizeof(pos), "AAPL", 4);
  assert_null(strstr(c.buf, pos));
  done(&c);
}

/* An event stream is one way: a client that keeps sending is cut off. */
static void client_that_talks(void **state) {
  hcli c;
  open_stream(&c, "?symbols=AAPL", NULL);
  assert_true(hcli_wait_bytes(&E.loop, &c, "retry: "));
  char junk[1024];
  memset(junk, 'x', sizeof(junk));
  hcli_sendn(&c, junk, sizeof(junk));
  assert_true(hcli_quiet(&E.loop, &c, 20)); /* a little is tolerated */
  for (int i = 0; i < 4; i++) hcli_sendn(&c, junk, sizeof(junk));
  assert_true(hcli_wait_eof(&E.loop, &c));
  done(&c);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(live_quotes, setup, teardown),
      cmocka_unit_test_setup_teardown(refusals, setup, teardown),
      cmocka_unit_test_setup_teardown(history_and_resume, setup, teardown),
      cmocka_unit_test_setup_teardown(client_that_talks, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  buf_pool_release();
  log_close();
  return rc;
}
