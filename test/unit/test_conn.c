/* The connection byte queue alone (conn.c), over one end of a real
 * socketpair, with no server and no HTTP: writes go out at once while the
 * connection is its creator's and once per loop iteration after a take-over;
 * more buffers than one writev takes are gathered in order; conflation by
 * opaque tag keeps the newest of each tag, leaves untagged, out-of-range and
 * in-flight entries alone, and keeps the byte count right; a peer that does
 * not read holds bytes in the queue until it does, and the drain notice
 * fires once; conn_end closes after the last byte; reads go to the creator,
 * then to the owner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "base/buf.h"
#include "http/conn_internal.h" /* private to http: the queue is set up alone */
#include "redis_fixture.h"

#define WAIT_MS 3000
/* What the peer may receive in one test. */
#define PEER_CAP (4 * 1024 * 1024)
/* A message large enough that a socketpair cannot take it at once. */
#define BIG_LEN (2 * 1024 * 1024)

typedef struct {
  td_conn conn; /* first: aligned as conn_internal.h wants it */
  char creator_data[64];
  size_t creator_len;
  int read_end_status;
  int creator_drains, take_overs, closes, closed;
  char close_reason[64];
  char owner_data[64];
  size_t owner_len;
  int owner_drains, owner_closes;
  char owner_reason[64];
} tconn;

static struct {
  uv_loop_t loop;
  tconn *t;
  int peer;
  char *got;
  size_t got_len;
  bool peer_eof;
} T;

/* ---- hooks and owner ------------------------------------------------------ */

static void append(char *dst, size_t *len, size_t cap, const char *p, size_t n) {
  if (*len + n > cap) n = cap - *len;
  memcpy(dst + *len, p, n);
  *len += n;
}

static void h_data(td_conn *c, const char *d, size_t n) {
  append(T.t->creator_data, &T.t->creator_len, sizeof(T.t->creator_data), d, n);
}
static void h_read_end(td_conn *c, int status) {
  T.t->read_end_status = status;
  conn_close(c, "peer closed");
}
static void h_drain(td_conn *c) { T.t->creator_drains++; }
static void h_take_over(td_conn *c) { T.t->take_overs++; }
static void h_close(td_conn *c, const char *reason) {
  T.t->closes++;
  snprintf(T.t->close_reason, sizeof(T.t->close_reason), "%s", reason);
}
static void h_closed(td_conn *c) { T.t->closed++; }

static const conn_hooks hooks = {h_data, h_read_end, h_drain, h_take_over, h_close, h_closed};

static void o_data(void *o, const char *d, size_t n) {
  tconn *t = o;
  append(t->owner_data, &t->owner_len, sizeof(t->owner_data), d, n);
}
static void o_drain(void *o) { ((tconn *)o)->owner_drains++; }
static void o_close(void *o, const char *reason) {
  tconn *t = o;
  t->owner_closes++;
  snprintf(t->owner_reason, sizeof(t->owner_reason), "%s", reason);
}

static const td_stream_ops owner_ops = {o_data, o_drain, o_close};

/* ---- set-up --------------------------------------------------------------- */

static void start(void) {
  memset(&T, 0, sizeof(T));
  assert_int_equal(uv_loop_init(&T.loop), 0);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  T.peer = sv[1];
  fcntl(T.peer, F_SETFL, fcntl(T.peer, F_GETFL) | O_NONBLOCK);
  T.got = malloc(PEER_CAP);
  assert_non_null(T.got);
  T.t = aligned_alloc(CONN_CACHE_LINE, sizeof(tconn));
  assert_non_null(T.t);
  memset(T.t, 0, sizeof(tconn));
  conn_setup(&T.t->conn, &T.loop, &hooks);
  assert_int_equal(uv_tcp_open(&T.t->conn.tcp, sv[0]), 0);
  assert_int_equal(conn_ready(&T.t->conn), 0);
}

static bool is_closed(void *arg) { return T.t->closed > 0; }

static void stop(void) {
  conn_close(&T.t->conn, "test over");
  assert_true(rfx_run_until(&T.loop, is_closed, NULL, WAIT_MS));
  conn_release(&T.t->conn);
  conn_stop_flushing();
  assert_true(rfx_loop_close(&T.loop));
  close(T.peer);
  free(T.t);
  free(T.got);
  assert_int_equal(buf_live_count(), 0);
}

static void peer_poll(void) {
  while (!T.peer_eof && T.got_len < PEER_CAP) {
    ssize_t r = recv(T.peer, T.got + T.got_len, PEER_CAP - T.got_len, MSG_DONTWAIT);
    if (r > 0) T.got_len += (size_t)r;
    else if (r == 0 || (errno != EAGAIN && errno != EINTR)) T.peer_eof = true;
    else return;
  }
}

static size_t want_len;
static bool peer_has(void *arg) {
  peer_poll();
  return T.got_len >= want_len;
}
/* Runs the loop (reading as the peer) until `n` bytes have arrived. */
static bool peer_wait(size_t n) {
  want_len = n;
  return rfx_run_until(&T.loop, peer_has, NULL, WAIT_MS);
}
static bool peer_eof(void *arg) {
  peer_poll();
  return T.peer_eof;
}

static void send_text(const char *s, uint32_t tag) {
  td_buf *b = buf_from(s, strlen(s));
  assert_non_null(b);
  assert_int_equal(conn_send(&T.t->conn, b, tag), 0);
  buf_unref(b);
}

static void take_over(void) {
  conn_take_over(&T.t->conn, &owner_ops, T.t);
  assert_int_equal(T.t->take_overs, 1);
}

/* ---- tests ---------------------------------------------------------------- */

/* The creator's writes leave before conn_send returns; a stream's wait for
 * the loop's prepare phase, all in one go. */
static void open_writes_now_stream_per_iteration(void **state) {
  start();
  send_text("now;", 0);
  peer_poll();
  assert_int_equal(T.got_len, 4);
  assert_int_equal(conn_queued_bytes(&T.t->conn), 0);
  take_over();
  send_text("a;", 0);
  send_text("b;", 0);
  assert_int_equal(conn_queued_bytes(&T.t->conn), 4);
  peer_poll();
  assert_int_equal(T.got_len, 4);
  assert_true(peer_wait(8));
  assert_memory_equal(T.got, "now;a;b;", 8);
  assert_int_equal(conn_queued_bytes(&T.t->conn), 0);
  stop();
}

/* More entries than one writev takes (CONN_MAX_IOV) leave complete and in order. */
static void gathers_past_max_iov(void **state) {
  start();
  take_over();
  char want[4 * CONN_MAX_IOV * 3 + 1] = "";
  size_t n = 0;
  for (int i = 0; i < CONN_MAX_IOV * 3; i++) {
    char s[16]; /* room for any int: the warning counts -2147483648 */
    snprintf(s, sizeof(s), "%03d;", i);
    send_text(s, 0);
    memcpy(want + n, s, 4);
    n += 4;
  }
  assert_int_equal(conn_queued_bytes(&T.t->conn), n);
  assert_true(peer_wait(n));
  assert_int_equal(T.got_len, n);
  assert_memory_equal(T.got, want, n);
  assert_int_equal(conn_queued_bytes(&T.t->conn), 0);
  stop();
}

/* The newest of each tag stays in its place; untagged entries and tags past
 * max_tag are never dropped; tags are any numbers up to max_tag, nothing
 * about what they stand for (here one past the hub's symbol limit). */
static void conflates_by_opaque_tag(void **state) {
  start();
  take_over();
  const uint32_t far = 70000;
  send_text("A1 ", 1);
  send_text("F1 ", far);
  send_text("A2 ", 1);
  send_text("C ", 0);
  send_text("X1 ", far + 1);
  send_text("F2 ", far);
  send_text("X2 ", far + 1);
  send_text("A3 ", 1);
  size_t before = conn_queued_bytes(&T.t->conn);
  assert_int_equal(conn_conflate(&T.t->conn, far), 3); /* A1, A2, F1 */
  assert_int_equal(conn_queued_bytes(&T.t->conn), before - 9);
  assert_int_equal(conn_conflate(&T.t->conn, far), 0);
  const char *want = "C X1 F2 X2 A3 ";
  assert_true(peer_wait(strlen(want)));
  assert_int_equal(T.got_len, strlen(want));
  assert_memory_equal(T.got, want, strlen(want));
  stop();
}

/* A peer that does not read: what the socket does not take waits in the
 * queue, in one uv_write that holds every entry listed when it started.
 * Conflation leaves those entries alone, even one not yet begun whose tag
 * a newer entry has (libuv still points into it). The drain notice reaches
 * the owner once, when the last byte is gone. */
static void in_flight_kept_and_drain_once(void **state) {
  start();
  take_over();
  td_buf *big = buf_new(BIG_LEN);
  assert_non_null(big);
  memset(big->data, 'x', BIG_LEN);
  big->len = BIG_LEN;
  assert_int_equal(conn_send(&T.t->conn, big, 0), 0);
  buf_unref(big);
  send_text("B ", 1);
  assert_int_equal(uv_run(&T.loop, UV_RUN_NOWAIT), 1); /* the prepare phase writes what it can */
  size_t queued = conn_queued_bytes(&T.t->conn);
  assert_true(queued > 2 && queued < BIG_LEN + 2); /* written in part, the rest in flight */
  send_text("C ", 1);
  send_text("D ", 1);
  assert_int_equal(conn_conflate(&T.t->conn, 1), 1); /* C; B is in flight */
  assert_int_equal(conn_queued_bytes(&T.t->conn), queued + 2);
  conn_notify_drain(&T.t->conn);
  assert_int_equal(T.t->owner_drains, 0);
  assert_true(peer_wait(BIG_LEN + 4));
  assert_int_equal(T.got_len, BIG_LEN + 4);
  assert_memory_equal(T.got + BIG_LEN, "B D ", 4);
  assert_int_equal(conn_queued_bytes(&T.t->conn), 0);
  assert_int_equal(T.t->owner_drains, 1);
  assert_int_equal(T.t->creator_drains, 0);
  send_text("E ", 0);
  assert_true(peer_wait(BIG_LEN + 6));
  assert_int_equal(T.t->owner_drains, 1);
  stop();
}

/* conn_end waits for the last byte, then closes: creator told once. */
static void end_after_flush(void **state) {
  start();
  take_over();
  send_text("last words", 0);
  conn_end(&T.t->conn);
  assert_int_equal(T.t->closes, 0);
  assert_true(rfx_run_until(&T.loop, peer_eof, NULL, WAIT_MS));
  assert_int_equal(T.got_len, 10);
  assert_int_equal(T.t->closes, 1);
  assert_int_equal(T.t->owner_closes, 1);
  assert_string_equal(T.t->owner_reason, "response complete");
  assert_true(conn_is_closing(&T.t->conn));
  assert_int_equal(conn_send_copy(&T.t->conn, "late", 4), -EPIPE);
  stop();
}

static bool creator_has(void *arg) { return T.t->creator_len >= *(size_t *)arg; }
static bool owner_has(void *arg) { return T.t->owner_len >= *(size_t *)arg; }

/* Bytes go to the creator until the take-over, then to the owner; the
 * peer's end closes the connection, and the owner hears it once. */
static void reads_creator_then_owner(void **state) {
  start();
  conn_read_start(&T.t->conn);
  assert_int_equal(send(T.peer, "GET", 3, 0), 3);
  size_t three = 3;
  assert_true(rfx_run_until(&T.loop, creator_has, &three, WAIT_MS));
  take_over();
  conn_feed_owner(&T.t->conn, "up", 2);
  assert_int_equal(send(T.peer, "ws", 2, 0), 2);
  size_t four = 4;
  assert_true(rfx_run_until(&T.loop, owner_has, &four, WAIT_MS));
  assert_memory_equal(T.t->creator_data, "GET", 3);
  assert_int_equal(T.t->creator_len, 3);
  assert_memory_equal(T.t->owner_data, "upws", 4);
  shutdown(T.peer, SHUT_WR);
  assert_true(rfx_run_until(&T.loop, is_closed, NULL, WAIT_MS));
  assert_int_equal(T.t->owner_closes, 1);
  assert_string_equal(T.t->owner_reason, "peer closed");
  assert_int_equal(T.t->read_end_status, 0); /* the creator no longer reads */
  stop();
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(open_writes_now_stream_per_iteration),
      cmocka_unit_test(gathers_past_max_iov),
      cmocka_unit_test(conflates_by_opaque_tag),
      cmocka_unit_test(in_flight_kept_and_drain_once),
      cmocka_unit_test(end_after_flush),
      cmocka_unit_test(reads_creator_then_owner),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
