/* redis_conn against a real redis-server: URL parsing, refused connects and
 * backoff, AUTH (password and ACL user, right and wrong), SELECT, unix
 * sockets, host name resolution, the command watchdog on a SIGSTOPped
 * server, and what one loop turn reads and writes (redis_uv). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/log.h"
#include "redis/redis_conn.h"
#include "redis_fixture.h"
#include "redis/redis_uv.h"
#include <hiredis/sds.h>
#include <sys/ioctl.h>

typedef struct harness {
  uv_loop_t loop;
  td_rconn conn;
  int ready, lost, lost_ready, closed, replies, null_replies;
  const char *last_reason;
  long long last_int;
  char last_str[64];
  /* every reply in order: its type, integer, and for arrays the integers */
  int types[64];
  long long ints[64];
  long long elems[64][4];
  int nelems[64];
  uintptr_t tags[64];
  int nrec;
  int resend; /* replies to tag RESEND_TAG that send one more command */
  td_rconn *second; /* a reply to tag PAIR_TAG sends on conn, then on this */
  int h2_replies, h2_closed;
} harness;

#define RESEND_TAG 3
#define PAIR_TAG 4
static int send_tagged(harness *h, uintptr_t tag, const char *cmd);

static void h_ready(td_rconn *c, void *ud) { ((harness *)ud)->ready++; }
static void h_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {
  harness *h = ud;
  h->lost++;
  h->lost_ready += was_ready;
  h->last_reason = reason;
}
static void h_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  harness *h = ud;
  if (!r) {
    h->null_replies++;
    return;
  }
  h->replies++;
  h->last_int = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  if (h->nrec < 64) {
    int i = h->nrec++;
    h->types[i] = r->type;
    h->ints[i] = r->integer;
    h->tags[i] = tag;
    for (size_t j = 0; r->type == REDIS_REPLY_ARRAY && j < r->elements && j < 4; j++)
      h->elems[i][h->nelems[i]++] = r->element[j]->type == REDIS_REPLY_INTEGER ? r->element[j]->integer : -1;
  }
  snprintf(h->last_str, sizeof(h->last_str), "%.*s", r->str ? (int)r->len : 0, r->str ? r->str : "");
  if (tag == RESEND_TAG && h->resend > 0) {
    h->resend--;
    send_tagged(h, RESEND_TAG, "INCR n");
  }
  if (tag == PAIR_TAG && h->second) {
    char *f;
    int len = redisFormatCommand(&f, "RPUSH order second");
    send_tagged(h, 7, "RPUSH order first");
    rconn_command(h->second, 7, f, (size_t)len);
    free(f);
  }
}
static void h_closed(td_rconn *c, void *ud) { ((harness *)ud)->closed++; }

static const rconn_callbacks h_cb = {h_ready, h_lost, h_reply, h_closed};
/* Short timers keep the suite fast; the defaults are exercised by tickerd. */
static const rconn_options fast = {.name = "test", .connect_timeout_ms = 1000,
                                   .command_timeout_ms = 300, .backoff_min_ms = 20,
                                   .backoff_max_ms = 80};

static bool is_ready(void *a) { return ((harness *)a)->conn.state == RCONN_READY; }
static bool lost_3(void *a) { return ((harness *)a)->lost >= 3; }
static bool lost_1(void *a) { return ((harness *)a)->lost >= 1; }
static bool got_reply(void *a) { return ((harness *)a)->replies + ((harness *)a)->null_replies > 0; }
static bool ready_twice(void *a) { return ((harness *)a)->ready >= 2; }
static bool replies_6(void *a) { return ((harness *)a)->replies >= 6; }
static bool replies_7(void *a) { return ((harness *)a)->replies >= 7; }
static bool is_closed(void *a) { return ((harness *)a)->closed == 1; }

static void h_start_opts(harness *h, const char *url, const rconn_options *o) {
  memset(h, 0, sizeof(*h));
  assert_int_equal(uv_loop_init(&h->loop), 0);
  const char *err = NULL;
  assert_int_equal(rconn_init(&h->conn, &h->loop, url, &h_cb, h, o, &err), 0);
  rconn_start(&h->conn);
}

static void h_start(harness *h, const char *url) { h_start_opts(h, url, &fast); }

/* A redis-server of its own and a READY connection to it. */
static void h_start_ready_opts(rfx *r, harness *h, const rconn_options *o) {
  char url[128];
  assert_int_equal(rfx_spawn(r, NULL), 0);
  h_start_opts(h, rfx_url(r, url, sizeof(url), NULL, 0), o);
  assert_true(rfx_run_until(&h->loop, is_ready, h, 2000));
}

static void h_start_ready(rfx *r, harness *h) { h_start_ready_opts(r, h, &fast); }

static void h_finish(harness *h) {
  rconn_close(&h->conn);
  assert_true(rfx_run_until(&h->loop, is_closed, h, 2000));
  assert_int_equal(h->conn.state, RCONN_CLOSED);
  assert_true(rfx_loop_close(&h->loop));
}

static int send_cmd(harness *h, const char *fmt, ...) {
  char *cmd;
  va_list ap;
  va_start(ap, fmt);
  int len = redisvFormatCommand(&cmd, fmt, ap);
  va_end(ap);
  int rc = rconn_command(&h->conn, 7, cmd, (size_t)len);
  free(cmd);
  return rc;
}

static int send_tagged(harness *h, uintptr_t tag, const char *cmd) {
  char *f;
  int len = redisFormatCommand(&f, cmd);
  int rc = rconn_command(&h->conn, tag, f, (size_t)len);
  free(f);
  return rc;
}

/* ---- URL parsing ---------------------------------------------------------- */

static void test_url_good(void **state) {
  rconn_url u;
  const char *err = NULL;
  assert_int_equal(rconn_url_parse("redis://localhost", &u, &err), 0);
  assert_string_equal(u.host, "localhost");
  assert_int_equal(u.port, 6379);
  assert_int_equal(u.db, 0);
  assert_null(u.password);
  assert_false(u.is_unix);
  rconn_url_free(&u);

  assert_int_equal(rconn_url_parse("REDIS://10.0.0.1:6380/2", &u, &err), 0);
  assert_string_equal(u.host, "10.0.0.1");
  assert_int_equal(u.port, 6380);
  assert_int_equal(u.db, 2);
  rconn_url_free(&u);

  assert_int_equal(rconn_url_parse("redis://:secret@h:1/3", &u, &err), 0);
  assert_null(u.user);
  assert_string_equal(u.password, "secret");
  assert_string_equal(u.masked, "redis://:***@h:1/3");
  assert_int_equal(u.db, 3);
  rconn_url_free(&u);

  assert_int_equal(rconn_url_parse("redis://alice:s%40c:r@t@redis/", &u, &err), 0);
  assert_string_equal(u.user, "alice");
  assert_string_equal(u.password, "s@c:r@t");
  assert_string_equal(u.host, "redis");
  assert_string_equal(u.masked, "redis://alice:***@redis/");
  assert_null(strstr(u.masked, "s%40"));
  rconn_url_free(&u);

  assert_int_equal(rconn_url_parse("redis://[::1]:7000/1", &u, &err), 0);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 7000);
  rconn_url_free(&u);

  assert_int_equal(rconn_url_parse("unix:///run/redis/redis.sock", &u, &err), 0);
  assert_true(u.is_unix);
  assert_string_equal(u.path, "/run/redis/redis.sock");
  rconn_url_free(&u);
}

static void test_url_bad(void **state) {
  static const char *const bad[] = {
      "", "http://h", "redis://", "redis://:6379", "redis://h:0", "redis://h:65536",
      "redis://h:12x", "redis://h/abc", "redis://h/70000", "redis://user@h", "redis://:@h",
      "redis://u:p%zz@h", "redis://u:p%0@h", "redis://[::1", "redis://[::1]x", "redis://h?db=1",
      "redis://h#x", "redis://h o", "unix://relative", "unix:///a?b", "redis://u:%00@h"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    rconn_url u;
    const char *err = NULL;
    int rc = rconn_url_parse(bad[i], &u, &err);
    if (rc != UV_EINVAL) fprintf(stderr, "accepted bad URL %s\n", bad[i]);
    assert_int_equal(rc, UV_EINVAL);
    assert_non_null(err);
    assert_null(u.host);
    assert_null(u.password);
  }
  rconn_url u;
  const char *err = NULL;
  assert_int_equal(rconn_url_parse("rediss://:pw@h:6380/2", &u, &err), 0);
  assert_true(u.tls);
  assert_string_equal(u.host, "h");
  assert_int_equal(u.port, 6380);
  assert_int_equal(u.db, 2);
  assert_string_equal(u.masked, "rediss://:***@h:6380/2");
  rconn_url_free(&u);
  assert_int_equal(rconn_url_parse("redis://h", &u, &err), 0);
  assert_false(u.tls);
  rconn_url_free(&u);
  char longurl[RCONN_URL_MAX + 32] = "redis://";
  memset(longurl + 8, 'a', RCONN_URL_MAX + 10);
  longurl[RCONN_URL_MAX + 18] = '\0';
  assert_int_equal(rconn_url_parse(longurl, &u, &err), UV_EINVAL);
}

/* ---- connections ---------------------------------------------------------- */

static void test_connect_refused_backs_off(void **state) {
  char url[128];
  snprintf(url, sizeof(url), "redis://127.0.0.1:%d", rfx_free_port());
  harness h;
  h_start(&h, url);
  assert_true(rfx_run_until(&h.loop, lost_3, &h, 3000));
  assert_int_equal(h.ready, 0);
  assert_int_equal(h.lost_ready, 0);
  assert_string_equal(h.last_reason, "connect failed");
  assert_true(h.conn.errors >= 3);
  assert_true(h.conn.reconnects >= 2);
  assert_false(rconn_ready(&h.conn));
  assert_int_equal(send_cmd(&h, "PING"), UV_ENOTCONN);
  h_finish(&h);
}

static void test_connect_and_command(void **state) {
  rfx r = {0};
  harness h;
  h_start_ready(&r, &h);
  assert_int_equal(send_cmd(&h, "PING"), 0);
  assert_true(rfx_run_until(&h.loop, got_reply, &h, 2000));
  assert_string_equal(h.last_str, "PONG");
  h_finish(&h);
  rfx_kill(&r);
}

/* Top-level integers are read into one shared object, not allocated: each
 * callback must still see its own value, and integers inside arrays, errors
 * and strings must come through as hiredis builds them. */
static void test_reply_types_in_a_pipeline(void **state) {
  rfx r = {0};
  harness h;
  h_start_ready(&r, &h);
  assert_int_equal(send_cmd(&h, "INCR n"), 0);
  assert_int_equal(send_cmd(&h, "SET s x"), 0);
  assert_int_equal(send_cmd(&h, "INCR s"), 0);
  assert_int_equal(send_cmd(&h, "SADD set a"), 0);
  assert_int_equal(send_cmd(&h, "SMISMEMBER set a b"), 0);
  assert_int_equal(send_cmd(&h, "INCRBY n 41"), 0);
  assert_true(rfx_run_until(&h.loop, replies_6, &h, 2000));
  assert_int_equal(h.nrec, 6);
  assert_int_equal(h.types[0], REDIS_REPLY_INTEGER);
  assert_int_equal(h.ints[0], 1);
  assert_int_equal(h.types[1], REDIS_REPLY_STATUS);
  assert_int_equal(h.types[2], REDIS_REPLY_ERROR);
  assert_int_equal(h.types[3], REDIS_REPLY_INTEGER);
  assert_int_equal(h.ints[3], 1);
  assert_int_equal(h.types[4], REDIS_REPLY_ARRAY);
  assert_int_equal(h.nelems[4], 2);
  assert_int_equal(h.elems[4][0], 1);
  assert_int_equal(h.elems[4][1], 0);
  assert_int_equal(h.types[5], REDIS_REPLY_INTEGER);
  assert_int_equal(h.ints[5], 42);
  /* Written out, the output buffer kept its allocation for the next batch:
   * redis_uv.c does the write itself with hiredis 0.14 only; 1.x writes and
   * frees the buffer as it always does. */
  assert_int_equal(rconn_pending_bytes(&h.conn), 0);
#if HIREDIS_MAJOR == 0 && HIREDIS_MINOR == 14
  assert_true(sdsalloc(h.conn.ac->c.obuf) >= RCONN_OBUF_MIN);
#endif
  assert_int_equal(send_cmd(&h, "INCR n"), 0);
  assert_true(rfx_run_until(&h.loop, replies_7, &h, 2000));
  assert_int_equal(h.ints[6], 43);
  h_finish(&h);
  rfx_kill(&r);
}

#define BIG_CMDS 4000
#define BIG_VALUE 1024
static bool big_done(void *a) { return ((harness *)a)->replies >= BIG_CMDS + 2; }
/* The watchdog times the oldest unanswered command, and all BIG_CMDS are
 * sent in one millisecond: with `fast`'s 300 ms the server had to answer
 * megabytes within 300 ms, which a loaded machine under ASan does not, and
 * the watchdog dropped the connection mid-pipeline. This test is about the
 * buffer, not the watchdog (test_watchdog_stalled_server is): tickerd's
 * default command timeout (a zero field takes it). */
static const rconn_options big_opts = {.name = "test", .connect_timeout_ms = 1000,
                                       .command_timeout_ms = 0, /* the default */
                                       .backoff_min_ms = 20, .backoff_max_ms = 80};

/* Megabytes queued in one loop iteration: the output buffer grows past
 * sds's linear steps and every byte still reaches the server in order. */
static void test_large_pipeline(void **state) {
  rfx r = {0};
  harness h;
  h_start_ready_opts(&r, &h, &big_opts);
  static char v[BIG_VALUE + 1];
  for (int i = 0; i < BIG_CMDS; i++) {
    snprintf(v, sizeof(v), "%0*d", BIG_VALUE, i);
    assert_int_equal(send_cmd(&h, "SET k%d %s", i, v), 0);
  }
  assert_true(rconn_pending_bytes(&h.conn) > (size_t)BIG_CMDS * BIG_VALUE);
  assert_int_equal(send_cmd(&h, "DBSIZE"), 0);
  assert_int_equal(send_cmd(&h, "GET k%d", BIG_CMDS - 1), 0);
  assert_true(rfx_run_until(&h.loop, big_done, &h, 10000));
  assert_int_equal(h.replies, BIG_CMDS + 2);
  assert_int_equal(h.null_replies, 0);
  assert_int_equal(rconn_pending_bytes(&h.conn), 0);
  /* Past REDISUV_OBUF_KEEP the emptied buffer was given back. */
  assert_true(sdsalloc(h.conn.ac->c.obuf) <= REDISUV_OBUF_KEEP);
  assert_int_equal(h.last_int, -1);
  snprintf(v, sizeof(v), "%0*d", BIG_VALUE, BIG_CMDS - 1);
  assert_int_equal(strncmp(h.last_str, v, sizeof(h.last_str) - 1), 0);
  h_finish(&h);
  rfx_kill(&r);
}

/* ---- what one loop turn does (redis_uv) ------------------------------------ */

/* A prepare handle runs right before the loop polls, as conn.c's flush of
 * the streaming clients does: what it sees is what that flush would see. */
typedef struct turn_probe {
  harness *h;
  int replies_seen;  /* replies when it first saw one, 0 until then */
  size_t pending;    /* rconn_pending_bytes then */
} turn_probe;

static void on_turn_probe(uv_prepare_t *p) {
  turn_probe *t = p->data;
  if (t->replies_seen || t->h->replies == 0) return;
  t->replies_seen = t->h->replies;
  t->pending = rconn_pending_bytes(&t->h->conn);
}

static bool replies_2(void *a) { return ((harness *)a)->replies >= 2; }

/* A command sent from a reply's callback (the poll phase, as a POST's
 * PUBLISHes are) is written in that turn's check phase, before the next
 * prepare. Fails on the code before: it waited for the next poll to report
 * the socket writable, so the prepare phase still found it queued. */
static void test_command_from_a_callback_is_written_before_the_next_poll(void **state) {
  rfx r = {0};
  harness h;
  h_start_ready(&r, &h);
  turn_probe t = {.h = &h};
  uv_prepare_t probe;
  uv_prepare_init(&h.loop, &probe);
  probe.data = &t;
  uv_prepare_start(&probe, on_turn_probe);
  h.resend = 1;
  assert_int_equal(send_tagged(&h, RESEND_TAG, "INCR n"), 0);
  assert_true(rfx_run_until(&h.loop, replies_2, &h, 2000));
  assert_int_equal(t.replies_seen, 1);
  assert_int_equal(t.pending, 0);
  assert_int_equal(h.last_int, 2);
  uv_close((uv_handle_t *)&probe, NULL);
  h_finish(&h);
  rfx_kill(&r);
}

/* The second connection's callbacks count into the harness's h2 fields. */
static void h2_ready(td_rconn *c, void *ud) {}
static void h2_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {}
static void h2_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) { ((harness *)ud)->h2_replies++; }
static void h2_closed(td_rconn *c, void *ud) { ((harness *)ud)->h2_closed++; }
static const rconn_callbacks h2_cb = {h2_ready, h2_lost, h2_reply, h2_closed};
static bool second_ready(void *a) { return ((harness *)a)->second->state == RCONN_READY; }
static bool pair_answered(void *a) { return ((harness *)a)->replies >= 2 && ((harness *)a)->h2_replies >= 1; }
static bool second_closed(void *a) { return ((harness *)a)->h2_closed == 1; }

/* Commands queued on two connections in one callback reach Redis in the
 * order they were queued (the hub reads history on one connection after a
 * SUBSCRIBE on another). Fails with check handles that each write their
 * own connection: libuv runs them newest first. */
static void test_commands_on_two_connections_keep_their_order(void **state) {
  rfx r = {0};
  harness h;
  char url[128];
  h_start_ready(&r, &h);
  td_rconn second;
  const char *err = NULL;
  assert_int_equal(rconn_init(&second, &h.loop, rfx_url(&r, url, sizeof(url), NULL, 0), &h2_cb, &h, &fast, &err), 0);
  rconn_start(&second);
  h.second = &second;
  assert_true(rfx_run_until(&h.loop, second_ready, &h, 2000));
  assert_int_equal(send_tagged(&h, PAIR_TAG, "PING"), 0);
  assert_true(rfx_run_until(&h.loop, pair_answered, &h, 2000));
  redisContext *check = rfx_client(&r);
  assert_non_null(check);
  redisReply *list = redisCommand(check, "LRANGE order 0 -1");
  assert_non_null(list);
  assert_int_equal(list->elements, 2);
  assert_string_equal(list->element[0]->str, "first");
  assert_string_equal(list->element[1]->str, "second");
  freeReplyObject(list);
  redisFree(check);
  rconn_close(&second);
  assert_true(rfx_run_until(&h.loop, second_closed, &h, 2000));
  h_finish(&h);
  rfx_kill(&r);
}

#define BURST_REPLIES 100
#define BURST_VALUE 500 /* 100 replies of 508 bytes: hiredis reads 16 KB a call */
static bool nothing_pending(void *a) { return rconn_pending_bytes(&((harness *)a)->conn) == 0; }

/* Replies already in the socket are read in one turn, not 16 KB per turn.
 * Fails on the code before: one readable event read 16 KB, 32 of the 100. */
static void test_replies_waiting_are_read_in_one_turn(void **state) {
  rfx r = {0};
  harness h;
  char url[128];
  assert_int_equal(rfx_spawn(&r, NULL), 0);
  memset(&h, 0, sizeof(h));
  assert_int_equal(uv_loop_init(&h.loop), 0);
  /* The replies wait while the loop does not run: no watchdog meanwhile. */
  rconn_options patient = fast;
  patient.command_timeout_ms = 10000;
  const char *err = NULL;
  assert_int_equal(rconn_init(&h.conn, &h.loop, rfx_url(&r, url, sizeof(url), NULL, 0), &h_cb, &h, &patient, &err), 0);
  rconn_start(&h.conn);
  assert_true(rfx_run_until(&h.loop, is_ready, &h, 2000));

  static char v[BURST_VALUE + 1];
  memset(v, 'x', BURST_VALUE);
  rfx_signal(&r, SIGSTOP); /* no reply before every command is written */
  for (int i = 0; i < BURST_REPLIES; i++) assert_int_equal(send_cmd(&h, "ECHO %s", v), 0);
  assert_true(rfx_run_until(&h.loop, nothing_pending, &h, 2000));
  rfx_signal(&r, SIGCONT);
  size_t want = (size_t)BURST_REPLIES * (BURST_VALUE + 8); /* "$500\r\n" ... "\r\n" */
  int waiting = 0;
  for (int i = 0; i < 500 && (size_t)waiting < want; i++) {
    rfx_sleep_ms(10);
    assert_int_equal(ioctl(h.conn.ac->c.fd, FIONREAD, &waiting), 0);
  }
  assert_int_equal(waiting, (int)want);
  assert_int_equal(h.replies, 0);
  uv_run(&h.loop, UV_RUN_NOWAIT);
  assert_int_equal(h.replies, BURST_REPLIES);
  assert_int_equal(strncmp(h.last_str, v, sizeof(h.last_str) - 1), 0);
  h_finish(&h);
  rfx_kill(&r);
}

static void test_hostname_resolved(void **state) {
  rfx r = {0};
  assert_int_equal(rfx_spawn(&r, NULL), 0);
  char url[128];
  snprintf(url, sizeof(url), "redis://localhost:%d", r.port);
  harness h;
  h_start(&h, url);
  assert_int_equal(h.conn.state, RCONN_RESOLVING);
  assert_true(rfx_run_until(&h.loop, is_ready, &h, 2000));
  assert_string_equal(h.conn.addr, "127.0.0.1");
  h_finish(&h);
  rfx_kill(&r);
}

static void test_auth_password(void **state) {
  rfx r = {0};
  rfx_arg(&r, "--requirepass", "s3cret pw");
  assert_int_equal(rfx_spawn(&r, "s3cret pw"), 0);
  char url[128];
  harness h;
  h_start(&h, rfx_url(&r, url, sizeof(url), ":s3cret%20pw", 0));
  assert_true(rfx_run_until(&h.loop, is_ready, &h, 2000));
  assert_int_equal(send_cmd(&h, "PING"), 0);
  assert_true(rfx_run_until(&h.loop, got_reply, &h, 2000));
  assert_string_equal(h.last_str, "PONG");
  h_finish(&h);

  /* Wrong password: never READY, retried with backoff, reason says why. */
  h_start(&h, rfx_url(&r, url, sizeof(url), ":wrong", 0));
  assert_true(rfx_run_until(&h.loop, lost_3, &h, 3000));
  assert_int_equal(h.ready, 0);
  assert_string_equal(h.last_reason, "auth failed");
  h_finish(&h);
  rfx_kill(&r);
}

static void test_auth_acl_user(void **state) {
  rfx r = {0};
  r.extra[r.nextra++] = "--user";
  r.extra[r.nextra++] = "alice";
  r.extra[r.nextra++] = "on";
  r.extra[r.nextra++] = ">pw";
  r.extra[r.nextra++] = "~*";
  r.extra[r.nextra++] = "&*";
  r.extra[r.nextra++] = "+@all";
  assert_int_equal(rfx_spawn(&r, NULL), 0);
  char url[128];
  harness h;
  h_start(&h, rfx_url(&r, url, sizeof(url), "alice:pw", 0));
  assert_true(rfx_run_until(&h.loop, is_ready, &h, 2000));
  assert_int_equal(send_cmd(&h, "ACL WHOAMI"), 0);
  assert_true(rfx_run_until(&h.loop, got_reply, &h, 2000));
  assert_string_equal(h.last_str, "alice");
  h_finish(&h);

  h_start(&h, rfx_url(&r, url, sizeof(url), "alice:nope", 0));
  assert_true(rfx_run_until(&h.loop, lost_1, &h, 3000));
  assert_string_equal(h.last_reason, "auth failed");
  h_finish(&h);
  rfx_kill(&r);
}

static void test_select_db(void **state) {
  rfx r = {0};
  assert_int_equal(rfx_spawn(&r, NULL), 0);
  char url[128];
  harness h;
  h_start(&h, rfx_url(&r, url, sizeof(url), NULL, 3));
  assert_true(rfx_run_until(&h.loop, is_ready, &h, 2000));
  assert_int_equal(send_cmd(&h, "RPUSH %s %s", "k", "v"), 0);
  assert_true(rfx_run_until(&h.loop, got_reply, &h, 2000));
  assert_int_equal(h.last_int, 1);
  h_finish(&h);
  assert_int_equal(rfx_int_command(&r, "LLEN k"), 0); /* db 0 */
  redisContext *c = rfx_client(&r);
  freeReplyObject(redisCommand(c, "SELECT 3"));
  redisReply *rep = redisCommand(c, "LLEN k");
  assert_int_equal(rep->integer, 1);
  freeReplyObject(rep);
  redisFree(c);

  /* A db the server does not have: SELECT fails, retried, never READY. */
  h_start(&h, rfx_url(&r, url, sizeof(url), NULL, 999));
  assert_true(rfx_run_until(&h.loop, lost_1, &h, 2000));
  assert_string_equal(h.last_reason, "select failed");
  assert_int_equal(h.ready, 0);
  h_finish(&h);
  rfx_kill(&r);
}

static void test_unix_socket(void **state) {
  rfx r = {0};
  snprintf(r.unixsock, sizeof(r.unixsock), "/tmp/td-rconn-%d.sock", (int)getpid());
  assert_int_equal(rfx_spawn(&r, NULL), 0);
  char url[160];
  snprintf(url, sizeof(url), "unix://%s", r.unixsock);
  harness h;
  h_start(&h, url);
  assert_true(rfx_run_until(&h.loop, is_ready, &h, 2000));
  assert_int_equal(send_cmd(&h, "PING"), 0);
  assert_true(rfx_run_until(&h.loop, got_reply, &h, 2000));
  assert_string_equal(h.last_str, "PONG");
  h_finish(&h);
  rfx_kill(&r);
  unlink(r.unixsock);
}

static void test_watchdog_stalled_server(void **state) {
  rfx r = {0};
  assert_int_equal(rfx_spawn(&r, NULL), 0);
  char url[128];
  harness h;
  h_start(&h, rfx_url(&r, url, sizeof(url), NULL, 0));
  assert_true(rfx_run_until(&h.loop, is_ready, &h, 2000));
  rfx_signal(&r, SIGSTOP);
  assert_int_equal(send_cmd(&h, "PING"), 0);
  assert_true(rfx_run_until(&h.loop, lost_1, &h, 3000));
  assert_string_equal(h.last_reason, "command timeout");
  assert_int_equal(h.lost_ready, 1);
  assert_int_equal(h.null_replies, 1); /* the PING never answered */
  assert_int_equal(h.replies, 0);
  rfx_signal(&r, SIGCONT);
  assert_true(rfx_run_until(&h.loop, ready_twice, &h, 3000));
  h.null_replies = 0;
  assert_int_equal(send_cmd(&h, "PING"), 0);
  assert_true(rfx_run_until(&h.loop, got_reply, &h, 2000));
  assert_int_equal(h.replies, 1);
  h_finish(&h);
  rfx_kill(&r);
}

/* Consecutive commands with one tag share a callback node (a run): each
 * reply must still reach its own command's tag, in order, across runs,
 * tags too large for a run, and commands sent from inside a reply. */
static bool replies_12(void *a) { return ((harness *)a)->replies >= 12; }
static void test_runs_keep_tags_and_order(void **state) {
  rfx r = {0};
  harness h;
  h_start_ready(&r, &h);
  static const uintptr_t tags[] = {1, 1, 1, 2, 2, 1, 1000, 1000, 1, RESEND_TAG};
  const int n = (int)(sizeof(tags) / sizeof(tags[0]));
  h.resend = 2; /* the RESEND_TAG reply sends one more, whose reply sends one more */
  for (int i = 0; i < n; i++) assert_int_equal(send_tagged(&h, tags[i], "INCR n"), 0);
  assert_true(rfx_run_until(&h.loop, replies_12, &h, 2000));
  assert_int_equal(h.nrec, n + 2);
  for (int i = 0; i < n + 2; i++) {
    assert_int_equal(h.types[i], REDIS_REPLY_INTEGER);
    assert_int_equal(h.ints[i], i + 1);
    assert_int_equal(h.tags[i], i < n ? tags[i] : RESEND_TAG);
  }
  assert_int_equal(h.null_replies, 0);
  assert_null(h.conn.ac->replies.head); /* no node left behind */
  h_finish(&h);
  rfx_kill(&r);
}

/* A run in flight when the connection is dropped: every command of it is
 * answered NULL, once. */
static void test_run_dropped_answers_every_command(void **state) {
  rfx r = {0};
  harness h;
  h_start_ready(&r, &h);
  rfx_signal(&r, SIGSTOP);
  for (int i = 0; i < 5; i++) assert_int_equal(send_tagged(&h, 1, "INCR n"), 0);
  assert_int_equal(send_tagged(&h, 2, "INCR n"), 0);
  assert_true(rfx_run_until(&h.loop, lost_1, &h, 3000));
  assert_string_equal(h.last_reason, "command timeout");
  assert_int_equal(h.null_replies, 6);
  assert_int_equal(h.replies, 0);
  rfx_signal(&r, SIGCONT);
  h_finish(&h);
  rfx_kill(&r);
}

static void test_server_restart_reconnects(void **state) {
  rfx r = {0};
  assert_int_equal(rfx_spawn(&r, NULL), 0);
  char url[128];
  harness h;
  h_start(&h, rfx_url(&r, url, sizeof(url), NULL, 0));
  assert_true(rfx_run_until(&h.loop, is_ready, &h, 2000));
  rfx_kill(&r);
  assert_true(rfx_run_until(&h.loop, lost_1, &h, 2000));
  assert_int_equal(h.lost_ready, 1);
  assert_int_equal(rfx_spawn(&r, NULL), 0);
  assert_true(rfx_run_until(&h.loop, ready_twice, &h, 3000));
  h_finish(&h);
  rfx_kill(&r);
}

static void test_close_while_connecting(void **state) {
  /* 192.0.2.1 (TEST-NET-1) never answers: the close must not wait for it. */
  harness h;
  h_start(&h, "redis://192.0.2.1:6379");
  rfx_run_for(&h.loop, 20);
  h_finish(&h);
}

static void test_close_while_resolving(void **state) {
  /* The resolver request cannot be taken back: close waits for its callback. */
  harness h;
  h_start(&h, "redis://localhost:1");
  assert_int_equal(h.conn.state, RCONN_RESOLVING);
  h_finish(&h);
  assert_int_equal(h.ready, 0);
}

static char log_path[64];

/* Runs last: every line the suite logged, including the AUTH failures with
 * wrong and right passwords, is in the file; no password is. */
static void test_password_never_logged(void **state) {
  log_flush();
  FILE *f = fopen(log_path, "r");
  assert_non_null(f);
  static char text[1 << 20];
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  text[n] = '\0';
  assert_non_null(strstr(text, "\"redis_auth_failed\""));
  assert_non_null(strstr(text, "\"redis_connect_failed\""));
  assert_non_null(strstr(text, ":***@"));
  assert_null(strstr(text, "s3cret"));
  assert_null(strstr(text, "wrong"));
  assert_null(strstr(text, "nope"));
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  snprintf(log_path, sizeof(log_path), "/tmp/td-rconn-log-%d.jsonl", (int)getpid());
  unlink(log_path);
  log_open(log_path, "debug");
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_good),
      cmocka_unit_test(test_url_bad),
      cmocka_unit_test(test_connect_refused_backs_off),
      cmocka_unit_test(test_connect_and_command),
      cmocka_unit_test(test_reply_types_in_a_pipeline),
      cmocka_unit_test(test_large_pipeline),
      cmocka_unit_test(test_command_from_a_callback_is_written_before_the_next_poll),
      cmocka_unit_test(test_replies_waiting_are_read_in_one_turn),
      cmocka_unit_test(test_commands_on_two_connections_keep_their_order),
      cmocka_unit_test(test_runs_keep_tags_and_order),
      cmocka_unit_test(test_run_dropped_answers_every_command),
      cmocka_unit_test(test_hostname_resolved),
      cmocka_unit_test(test_auth_password),
      cmocka_unit_test(test_auth_acl_user),
      cmocka_unit_test(test_select_db),
      cmocka_unit_test(test_unix_socket),
      cmocka_unit_test(test_watchdog_stalled_server),
      cmocka_unit_test(test_server_restart_reconnects),
      cmocka_unit_test(test_close_while_connecting),
      cmocka_unit_test(test_close_while_resolving),
      cmocka_unit_test(test_password_never_logged),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  log_close();
  unlink(log_path);
  return rc;
}
