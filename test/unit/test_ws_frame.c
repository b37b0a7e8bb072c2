/* ws_frame: the RFC 6455 examples, the Autobahn|Testsuite case families 1-7
 * and 9 (limits) ported to the parser, every byte split, the encoder round
 * trip and the handshake keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "http/ws_frame.h"

/* ---- Helpers: build wire bytes, feed them, record what the parser says ---- */

#define FIN 0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10
#define MAX_EVENTS 64
#define WIRE_MAX (256 * 1024)

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d}; /* RFC 6455 5.7 */

typedef struct {
  uint8_t b[WIRE_MAX];
  size_t n;
} wire;

/* One frame as a peer of a parser in `role` sends it: masked towards a server.
 * flags: FIN and RSV bits of the first byte. */
static void w_frame(wire *w, ws_role role, uint8_t flags, int op, const void *payload, size_t n) {
  bool masked = role == WS_ROLE_SERVER;
  size_t h = ws_frame_header(w->b + w->n, (ws_opcode)op, false, n, masked ? key : NULL);
  assert_true(w->n + h + n <= WIRE_MAX);
  w->b[w->n] = (uint8_t)(flags | op);
  w->n += h;
  if (masked)
    ws_mask(w->b + w->n, payload, n, key, 0);
  else if (n)
    memcpy(w->b + w->n, payload, n);
  w->n += n;
}

static void w_bytes(wire *w, const void *p, size_t n) {
  memcpy(w->b + w->n, p, n);
  w->n += n;
}

typedef struct {
  char kind; /* 'm' message, 'i' ping, 'o' pong, 'c' close */
  int op_or_code;
  char *data;
  size_t len;
} event;

typedef struct {
  event ev[MAX_EVENTS];
  int n;
  int rc;
  int close_code;
  const char *error;
  int stop_after; /* a callback returns 1 at this event count (0: never) */
  const char *last_ptr;
} record;

static int rec_add(record *r, char kind, int v, const char *data, size_t len) {
  assert_true(r->n < MAX_EVENTS);
  event *e = &r->ev[r->n++];
  e->kind = kind;
  e->op_or_code = v;
  e->len = len;
  e->data = malloc(len + 1);
  memcpy(e->data, data, len);
  e->data[len] = 0;
  r->last_ptr = data;
  return r->stop_after && r->n >= r->stop_after;
}

static int on_message(void *ud, ws_opcode op, const char *d, size_t n) { return rec_add(ud, 'm', op, d, n); }
static int on_ping(void *ud, const char *d, size_t n) { return rec_add(ud, 'i', 0, d, n); }
static int on_pong(void *ud, const char *d, size_t n) { return rec_add(ud, 'o', 0, d, n); }
static int on_close(void *ud, int code, const char *d, size_t n) { return rec_add(ud, 'c', code, d, n); }
static const ws_callbacks cbs = {on_message, on_ping, on_pong, on_close};

static void rec_free(record *r) {
  for (int i = 0; i < r->n; i++) free(r->ev[i].data);
  r->n = 0;
}

/* Feeds `n` bytes in pieces of `chunk` (0: all at once); stops at the first
 * non-zero result, as a connection would. */
static void run(record *r, ws_role role, size_t max, const uint8_t *b, size_t n, size_t chunk) {
  ws_parser p;
  int stop = r->stop_after;
  memset(r, 0, sizeof(*r));
  r->stop_after = stop;
  ws_parser_init(&p, role, max);
  size_t off = 0;
  do {
    size_t k = chunk && chunk < n - off ? chunk : n - off;
    r->rc = ws_parser_feed(&p, (const char *)b + off, k, &cbs, r);
    off += k;
  } while (r->rc == 0 && off < n);
  r->close_code = ws_parser_close_code(&p);
  r->error = ws_parser_error(&p);
  if (r->rc != 0) {
    /* Errors are sticky: a later call parses nothing and says the same. */
    int before = r->n;
    assert_int_equal(ws_parser_feed(&p, "\x81\x00", 2, &cbs, r), r->rc);
    assert_int_equal(r->n, before);
  }
  ws_parser_free(&p);
}

static void assert_same(const record *a, const record *b) {
  assert_int_equal(a->rc, b->rc);
  assert_int_equal(a->close_code, b->close_code);
  assert_int_equal(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    assert_int_equal(a->ev[i].kind, b->ev[i].kind);
    assert_int_equal(a->ev[i].op_or_code, b->ev[i].op_or_code);
    assert_int_equal(a->ev[i].len, b->ev[i].len);
    assert_memory_equal(a->ev[i].data, b->ev[i].data, a->ev[i].len);
  }
}

/* Parses the wire whole, then 1, 2, 3, 5, 7 and 13 bytes at a time: every
 * split must give the same events and the same result. */
static void run_splits(record *r, ws_role role, size_t max, const wire *w) {
  static const size_t chunks[] = {1, 2, 3, 5, 7, 13};
  run(r, role, max, w->b, w->n, 0);
  for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
    record s = {.stop_after = r->stop_after};
    run(&s, role, max, w->b, w->n, chunks[i]);
    assert_same(r, &s);
    rec_free(&s);
  }
}

static void expect_event(const record *r, int i, char kind, int v, const char *data, size_t len) {
  assert_true(i < r->n);
  assert_int_equal(r->ev[i].kind, kind);
  assert_int_equal(r->ev[i].op_or_code, v);
  assert_int_equal(r->ev[i].len, len);
  assert_memory_equal(r->ev[i].data, data, len);
}

/* A single frame to a parser of `role` must fail with `rc` / `code`. */
static void expect_frame_fails(ws_role role, uint8_t flags, int op, const void *pl, size_t n,
                               int rc, int code) {
  static wire w;
  record r = {0};
  w.n = 0;
  w_frame(&w, role, flags, op, pl, n);
  run_splits(&r, role, 0, &w);
  assert_int_equal(r.rc, rc);
  assert_int_equal(r.close_code, code);
  assert_non_null(r.error);
  assert_int_equal(r.n, 0);
  rec_free(&r);
}

static wire w; /* large: static, one test at a time */

/* ---- RFC 6455 5.7 examples ---------------------------------------------- */

static void test_rfc_examples(void **state) {
  static const uint8_t unmasked_hello[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
  static const uint8_t masked_hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  static const uint8_t fragmented[] = {0x01, 0x03, 'H', 'e', 'l', 0x80, 0x02, 'l', 'o'};
  static const uint8_t ping[] = {0x89, 0x05, 'H', 'e', 'l', 'l', 'o'};
  static const uint8_t masked_pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  record r = {0};

  w.n = 0;
  w_bytes(&w, unmasked_hello, sizeof(unmasked_hello));
  w_bytes(&w, fragmented, sizeof(fragmented));
  w_bytes(&w, ping, sizeof(ping));
  run_splits(&r, WS_ROLE_CLIENT, 0, &w);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.n, 3);
  expect_event(&r, 0, 'm', WS_OP_TEXT, "Hello", 5);
  expect_event(&r, 1, 'm', WS_OP_TEXT, "Hello", 5);
  expect_event(&r, 2, 'i', 0, "Hello", 5);
  rec_free(&r);

  w.n = 0;
  w_bytes(&w, masked_hello, sizeof(masked_hello));
  w_bytes(&w, masked_pong, sizeof(masked_pong));
  run_splits(&r, WS_ROLE_SERVER, 0, &w);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.n, 2);
  expect_event(&r, 0, 'm', WS_OP_TEXT, "Hello", 5);
  expect_event(&r, 1, 'o', 0, "Hello", 5);
  rec_free(&r);

  /* 256 bytes with a 16-bit length, 65536 bytes with a 64-bit length. */
  static uint8_t big[65536];
  for (size_t i = 0; i < sizeof(big); i++) big[i] = (uint8_t)i;
  w.n = 0;
  w_bytes(&w, "\x82\x7e\x01\x00", 4);
  w_bytes(&w, big, 256);
  w_bytes(&w, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  w_bytes(&w, big, 65536);
  run(&r, WS_ROLE_CLIENT, 65536, w.b, w.n, 0);
  assert_int_equal(r.rc, 0);
  expect_event(&r, 0, 'm', WS_OP_BINARY, (const char *)big, 256);
  expect_event(&r, 1, 'm', WS_OP_BINARY, (const char *)big, 65536);
  rec_free(&r);
  run(&r, WS_ROLE_CLIENT, 65536, w.b, w.n, 1);
  assert_int_equal(r.rc, 0);
  expect_event(&r, 1, 'm', WS_OP_BINARY, (const char *)big, 65536);
  rec_free(&r);
}

/* ---- Autobahn 1.x: framing, every length class, both roles -------------- */

static void test_framing_lengths(void **state) {
  static const size_t lens[] = {0, 1, 125, 126, 127, 128, 1000, 65535, 65536, 100000};
  static char payload[100000];
  for (size_t i = 0; i < sizeof(payload); i++) payload[i] = (char)('a' + i % 26);
  for (int role = 0; role < 2; role++) {
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
      record r = {0};
      w.n = 0;
      w_frame(&w, (ws_role)role, FIN, WS_OP_TEXT, payload, lens[i]);
      w_frame(&w, (ws_role)role, FIN, WS_OP_BINARY, payload, lens[i]);
      if (lens[i] <= 1000) {
        run_splits(&r, (ws_role)role, 100000, &w);
      } else {
        run(&r, (ws_role)role, 100000, w.b, w.n, 0);
        record s = {0};
        run(&s, (ws_role)role, 100000, w.b, w.n, 4093); /* a prime: splits land everywhere */
        assert_same(&r, &s);
        rec_free(&s);
      }
      assert_int_equal(r.rc, 0);
      assert_int_equal(r.n, 2);
      expect_event(&r, 0, 'm', WS_OP_TEXT, payload, lens[i]);
      expect_event(&r, 1, 'm', WS_OP_BINARY, payload, lens[i]);
      rec_free(&r);
    }
  }
}

/* RFC 6455 5.2 says "the minimal number of bytes MUST be used" for the
 * sender, but the receiver has nothing to gain by refusing: accepted. */
static void test_non_minimal_lengths(void **state) {
  record r = {0};
  w.n = 0;
  w_bytes(&w, "\x81\x7e\x00\x02hi", 6);
  w_bytes(&w, "\x81\x7f\x00\x00\x00\x00\x00\x00\x00\x02hi", 12);
  run_splits(&r, WS_ROLE_CLIENT, 0, &w);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.n, 2);
  expect_event(&r, 1, 'm', WS_OP_TEXT, "hi", 2);
  rec_free(&r);
}

/* The unmasked, unfragmented frame that arrives whole goes to the callback
 * straight from the caller's buffer. */
static void test_zero_copy(void **state) {
  ws_parser p;
  record r = {0};
  static const char frame[] = "\x81\x05Hello";
  ws_parser_init(&p, WS_ROLE_CLIENT, 0);
  assert_int_equal(ws_parser_feed(&p, frame, 7, &cbs, &r), 0);
  assert_ptr_equal(r.last_ptr, frame + 2);
  assert_null(p.msg); /* nothing allocated */
  ws_parser_free(&p);
  rec_free(&r);
}

/* ---- Autobahn 2.x: pings and pongs -------------------------------------- */

static void test_ping_pong(void **state) {
  static char payload[126];
  static const uint8_t bin[] = {0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff};
  record r = {0};
  memset(payload, 'p', sizeof(payload));
  for (int role = 0; role < 2; role++) {
    w.n = 0;
    w_frame(&w, (ws_role)role, FIN, WS_OP_PING, "", 0);
    w_frame(&w, (ws_role)role, FIN, WS_OP_PING, payload, 125);
    w_frame(&w, (ws_role)role, FIN, WS_OP_PING, bin, sizeof(bin));
    w_frame(&w, (ws_role)role, FIN, WS_OP_PONG, "unsolicited", 11);
    for (int i = 0; i < 10; i++) w_frame(&w, (ws_role)role, FIN, WS_OP_PING, "x", 1);
    run_splits(&r, (ws_role)role, 0, &w);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n, 14);
    expect_event(&r, 0, 'i', 0, "", 0);
    expect_event(&r, 1, 'i', 0, payload, 125);
    expect_event(&r, 2, 'i', 0, (const char *)bin, sizeof(bin));
    expect_event(&r, 3, 'o', 0, "unsolicited", 11);
    expect_event(&r, 13, 'i', 0, "x", 1);
    rec_free(&r);
  }
  /* 2.5: a control frame above 125 bytes. */
  expect_frame_fails(WS_ROLE_SERVER, FIN, WS_OP_PING, payload, 126, WS_EPROTO, 1002);
  expect_frame_fails(WS_ROLE_CLIENT, FIN, WS_OP_PONG, payload, 126, WS_EPROTO, 1002);
  expect_frame_fails(WS_ROLE_SERVER, FIN, WS_OP_CLOSE, payload, 126, WS_EPROTO, 1002);
}

/* ---- Autobahn 3.x: reserved bits ---------------------------------------- */

static void test_reserved_bits(void **state) {
  static const uint8_t rsv[] = {RSV1, RSV2, RSV3, RSV1 | RSV2, RSV1 | RSV2 | RSV3};
  for (size_t i = 0; i < sizeof(rsv); i++) {
    for (int role = 0; role < 2; role++) {
      expect_frame_fails((ws_role)role, FIN | rsv[i], WS_OP_TEXT, "hi", 2, WS_EPROTO, 1002);
      expect_frame_fails((ws_role)role, FIN | rsv[i], WS_OP_BINARY, "\x00\xff", 2, WS_EPROTO, 1002);
      expect_frame_fails((ws_role)role, FIN | rsv[i], WS_OP_PING, "hi", 2, WS_EPROTO, 1002);
    }
  }
  /* 3.2: the valid frame before the bad one is delivered, nothing after. */
  record r = {0};
  w.n = 0;
  w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_TEXT, "Hello", 5);
  w_frame(&w, WS_ROLE_SERVER, FIN | RSV2, WS_OP_TEXT, "Hello", 5);
  w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_PING, "", 0);
  run_splits(&r, WS_ROLE_SERVER, 0, &w);
  assert_int_equal(r.rc, WS_EPROTO);
  assert_int_equal(r.n, 1);
  expect_event(&r, 0, 'm', WS_OP_TEXT, "Hello", 5);
  rec_free(&r);
}

/* ---- Autobahn 4.x: opcodes ---------------------------------------------- */

static void test_reserved_opcodes(void **state) {
  static const int ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
    for (int role = 0; role < 2; role++) {
      expect_frame_fails((ws_role)role, FIN, ops[i], "", 0, WS_EPROTO, 1002);
      expect_frame_fails((ws_role)role, FIN, ops[i], "reserved", 8, WS_EPROTO, 1002);
    }
  }
}

/* ---- Autobahn 5.x: fragmentation ---------------------------------------- */

static void test_fragmentation(void **state) {
  record r = {0};
  for (int role = 0; role < 2; role++) {
    w.n = 0;
    /* 5.3-5.8: text in pieces, pings and pongs in between. */
    w_frame(&w, (ws_role)role, 0, WS_OP_TEXT, "frag", 4);
    w_frame(&w, (ws_role)role, FIN, WS_OP_PING, "p1", 2);
    w_frame(&w, (ws_role)role, 0, WS_OP_CONTINUATION, "men", 3);
    w_frame(&w, (ws_role)role, FIN, WS_OP_PONG, "o1", 2);
    w_frame(&w, (ws_role)role, 0, WS_OP_CONTINUATION, "", 0);
    w_frame(&w, (ws_role)role, FIN, WS_OP_CONTINUATION, "ts", 2);
    /* Binary in 1-byte fragments; an empty fragmented message. */
    w_frame(&w, (ws_role)role, 0, WS_OP_BINARY, "\x00", 1);
    w_frame(&w, (ws_role)role, 0, WS_OP_CONTINUATION, "\x01", 1);
    w_frame(&w, (ws_role)role, FIN, WS_OP_CONTINUATION, "\xff", 1);
    w_frame(&w, (ws_role)role, 0, WS_OP_TEXT, "", 0);
    w_frame(&w, (ws_role)role, FIN, WS_OP_CONTINUATION, "", 0);
    w_frame(&w, (ws_role)role, FIN, WS_OP_TEXT, "after", 5);
    run_splits(&r, (ws_role)role, 0, &w);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n, 6);
    expect_event(&r, 0, 'i', 0, "p1", 2);
    expect_event(&r, 1, 'o', 0, "o1", 2);
    expect_event(&r, 2, 'm', WS_OP_TEXT, "fragments", 9);
    expect_event(&r, 3, 'm', WS_OP_BINARY, "\x00\x01\xff", 3);
    expect_event(&r, 4, 'm', WS_OP_TEXT, "", 0);
    expect_event(&r, 5, 'm', WS_OP_TEXT, "after", 5);
    rec_free(&r);
  }
}

static void test_fragmentation_errors(void **state) {
  record r = {0};
  /* 5.1/5.2: fragmented control frames. */
  expect_frame_fails(WS_ROLE_SERVER, 0, WS_OP_PING, "hi", 2, WS_EPROTO, 1002);
  expect_frame_fails(WS_ROLE_CLIENT, 0, WS_OP_PONG, "hi", 2, WS_EPROTO, 1002);
  expect_frame_fails(WS_ROLE_SERVER, 0, WS_OP_CLOSE, "", 0, WS_EPROTO, 1002);
  /* 5.9-5.14: continuation without a message, with and without FIN. */
  expect_frame_fails(WS_ROLE_SERVER, FIN, WS_OP_CONTINUATION, "x", 1, WS_EPROTO, 1002);
  expect_frame_fails(WS_ROLE_CLIENT, 0, WS_OP_CONTINUATION, "x", 1, WS_EPROTO, 1002);
  /* Continuation after the message ended. */
  w.n = 0;
  w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_TEXT, "done", 4);
  w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_CONTINUATION, "more", 4);
  run_splits(&r, WS_ROLE_SERVER, 0, &w);
  assert_int_equal(r.rc, WS_EPROTO);
  assert_int_equal(r.n, 1);
  rec_free(&r);
  /* 5.18: a new data frame while a fragmented message is open. */
  for (int op = WS_OP_TEXT; op <= WS_OP_BINARY; op++) {
    w.n = 0;
    w_frame(&w, WS_ROLE_SERVER, 0, WS_OP_TEXT, "open", 4);
    w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_PING, "", 0);
    w_frame(&w, WS_ROLE_SERVER, FIN, op, "new", 3);
    run_splits(&r, WS_ROLE_SERVER, 0, &w);
    assert_int_equal(r.rc, WS_EPROTO);
    assert_int_equal(r.close_code, 1002);
    assert_int_equal(r.n, 1); /* the ping */
    rec_free(&r);
  }
}

/* ---- Masking per role --------------------------------------------------- */

static void test_masking_per_role(void **state) {
  record r = {0};
  /* A client's unmasked frame to our server; a server's masked frame to our client. */
  run(&r, WS_ROLE_SERVER, 0, (const uint8_t *)"\x81\x02hi", 4, 0);
  assert_int_equal(r.rc, WS_EPROTO);
  assert_int_equal(r.close_code, 1002);
  run(&r, WS_ROLE_CLIENT, 0, (const uint8_t *)"\x81\x82\x01\x02\x03\x04hi", 8, 0);
  assert_int_equal(r.rc, WS_EPROTO);
  assert_int_equal(r.close_code, 1002);
  /* Control frames too. */
  run(&r, WS_ROLE_SERVER, 0, (const uint8_t *)"\x89\x00", 2, 1);
  assert_int_equal(r.rc, WS_EPROTO);
  run(&r, WS_ROLE_CLIENT, 0, (const uint8_t *)"\x8a\x80\x01\x02\x03\x04", 6, 1);
  assert_int_equal(r.rc, WS_EPROTO);
}

/* ---- Autobahn 6.x: UTF-8 ------------------------------------------------ */

static const char *const valid_utf8[] = {
    "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
    "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", /* κόσμε */
    "\x00",                                         /* U+0000 (length 1 below) */
    "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf",
    "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xef\xbf\xbe", /* U+10000, U+10FFFF, U+FFFE */
};

static const char *const invalid_utf8[] = {
    "\x80",                 /* lone continuation */
    "\xbf",
    "\xc0\xaf",             /* overlong '/' */
    "\xc1\xbf",
    "\xe0\x80\xaf",
    "\xe0\x9f\xbf",         /* overlong U+07FF */
    "\xf0\x80\x80\xaf",
    "\xf0\x8f\xbf\xbf",     /* overlong U+FFFF */
    "\xed\xa0\x80",         /* U+D800 */
    "\xed\xbf\xbf",         /* U+DFFF */
    "\xed\xa0\x80\xed\xb0\x80", /* a surrogate pair */
    "\xf4\x90\x80\x80",     /* U+110000 */
    "\xf5\x80\x80\x80",
    "\xf8\x88\x80\x80\x80",
    "\xfe",
    "\xff",
    "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited", /* 6.3 */
    "\xc2\x41",             /* lead byte, then ASCII */
    "\xe1\x80\x41",
    "abc\xce",              /* ends mid-character */
    "\xf0\x9f\x98",
};

static size_t utf8_case_len(const char *s) { return s[0] == 0 ? 1 : strlen(s); }

static void test_utf8_valid_fragmented(void **state) {
  for (size_t c = 0; c < sizeof(valid_utf8) / sizeof(valid_utf8[0]); c++) {
    const char *s = valid_utf8[c];
    size_t n = utf8_case_len(s);
    /* 6.2/6.4: every split point between two fragments, and one fragment per byte. */
    for (size_t cut = 0; cut <= n; cut++) {
      record r = {0};
      w.n = 0;
      w_frame(&w, WS_ROLE_SERVER, 0, WS_OP_TEXT, s, cut);
      w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_CONTINUATION, s + cut, n - cut);
      run_splits(&r, WS_ROLE_SERVER, 0, &w);
      assert_int_equal(r.rc, 0);
      expect_event(&r, 0, 'm', WS_OP_TEXT, s, n);
      rec_free(&r);
    }
    record r = {0};
    w.n = 0;
    for (size_t i = 0; i < n; i++)
      w_frame(&w, WS_ROLE_CLIENT, i + 1 == n ? FIN : 0, i ? WS_OP_CONTINUATION : WS_OP_TEXT, s + i, 1);
    run_splits(&r, WS_ROLE_CLIENT, 0, &w);
    assert_int_equal(r.rc, 0);
    expect_event(&r, 0, 'm', WS_OP_TEXT, s, n);
    rec_free(&r);
  }
}

static void test_utf8_invalid(void **state) {
  for (size_t c = 0; c < sizeof(invalid_utf8) / sizeof(invalid_utf8[0]); c++) {
    const char *s = invalid_utf8[c];
    size_t n = strlen(s);
    for (int role = 0; role < 2; role++) {
      expect_frame_fails((ws_role)role, FIN, WS_OP_TEXT, s, n, WS_EUTF8, 1007);
      /* Split into fragments anywhere: still 1007. */
      for (size_t cut = 0; cut <= n; cut++) {
        record r = {0};
        w.n = 0;
        w_frame(&w, (ws_role)role, 0, WS_OP_TEXT, s, cut);
        w_frame(&w, (ws_role)role, FIN, WS_OP_CONTINUATION, s + cut, n - cut);
        run_splits(&r, (ws_role)role, 0, &w);
        assert_int_equal(r.rc, WS_EUTF8);
        assert_int_equal(r.close_code, 1007);
        assert_int_equal(r.n, 0);
        rec_free(&r);
      }
    }
  }
  /* Binary messages are not UTF-8 checked. */
  record r = {0};
  w.n = 0;
  w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_BINARY, "\xff\xfe", 2);
  run_splits(&r, WS_ROLE_SERVER, 0, &w);
  assert_int_equal(r.rc, 0);
  rec_free(&r);
}

/* 6.4.x: the error comes with the fragment, even the partial frame, that
 * makes the text impossible; not when the message ends. */
static void test_utf8_fail_fast(void **state) {
  static const char good[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
  record r = {0};
  for (int role = 0; role < 2; role++) {
    /* A first fragment that cannot be completed, message never finished. */
    w.n = 0;
    w_frame(&w, (ws_role)role, 0, WS_OP_TEXT, good, sizeof(good) - 1);
    w_frame(&w, (ws_role)role, 0, WS_OP_CONTINUATION, "\xf4\x90\x80\x80", 4);
    run_splits(&r, (ws_role)role, 0, &w);
    assert_int_equal(r.rc, WS_EUTF8);
    rec_free(&r);
    /* Inside one frame: header announces 1000 bytes; only 13 arrive. */
    static char body[1000];
    memset(body, 'a', sizeof(body));
    memcpy(body, good, sizeof(good) - 1);
    memcpy(body + sizeof(good) - 1, "\xed\xa0", 2);
    w.n = 0;
    w_frame(&w, (ws_role)role, FIN, WS_OP_TEXT, body, sizeof(body));
    size_t hdr = role == WS_ROLE_SERVER ? 8 : 4;
    run(&r, (ws_role)role, 0, w.b, hdr + sizeof(good) + 1, 1);
    assert_int_equal(r.rc, WS_EUTF8);
    assert_int_equal(r.close_code, 1007);
    rec_free(&r);
  }
}

/* ---- Autobahn 7.x: close ------------------------------------------------ */

static void close_frame(wire *cw, ws_role role, int code, const char *reason, size_t rlen) {
  char pl[WS_MAX_CONTROL_PAYLOAD + 8];
  pl[0] = (char)(code >> 8);
  pl[1] = (char)code;
  memcpy(pl + 2, reason, rlen);
  w_frame(cw, role, FIN, WS_OP_CLOSE, pl, rlen + 2);
}

static void test_close(void **state) {
  record r = {0};
  for (int role = 0; role < 2; role++) {
    /* 7.3.1: empty close; bytes after a close are ignored. */
    w.n = 0;
    w_frame(&w, (ws_role)role, FIN, WS_OP_CLOSE, "", 0);
    w_frame(&w, (ws_role)role, FIN, WS_OP_TEXT, "late", 4);
    w_bytes(&w, "\xff\xff\xff", 3);
    run_splits(&r, (ws_role)role, 0, &w);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n, 1);
    expect_event(&r, 0, 'c', WS_CLOSE_NO_STATUS, "", 0);
    rec_free(&r);
    /* 7.3.3-7.3.6: code with and without a reason, a 123-byte reason. */
    static char reason[WS_MAX_CLOSE_REASON];
    memset(reason, 'r', sizeof(reason));
    w.n = 0;
    close_frame(&w, (ws_role)role, 1000, "", 0);
    run_splits(&r, (ws_role)role, 0, &w);
    expect_event(&r, 0, 'c', 1000, "", 0);
    rec_free(&r);
    w.n = 0;
    close_frame(&w, (ws_role)role, 1001, "Hello \xce\xba", 8);
    run_splits(&r, (ws_role)role, 0, &w);
    expect_event(&r, 0, 'c', 1001, "Hello \xce\xba", 8);
    rec_free(&r);
    w.n = 0;
    close_frame(&w, (ws_role)role, 4999, reason, sizeof(reason));
    run_splits(&r, (ws_role)role, 0, &w);
    assert_int_equal(r.rc, 0);
    expect_event(&r, 0, 'c', 4999, reason, sizeof(reason));
    rec_free(&r);
    /* 7.3.2: a 1-byte payload. 7.5.1: invalid UTF-8 reason. */
    expect_frame_fails((ws_role)role, FIN, WS_OP_CLOSE, "\x03", 1, WS_EPROTO, 1002);
    expect_frame_fails((ws_role)role, FIN, WS_OP_CLOSE, "\x03\xe8\xce\xba\xe1\xbd\xb9\xed\xa0\x80", 10,
                       WS_EUTF8, 1007);
    expect_frame_fails((ws_role)role, FIN, WS_OP_CLOSE, "\x03\xe8\xce", 3, WS_EUTF8, 1007);
  }
}

static void test_close_codes(void **state) {
  /* 7.7.x valid; 1012-1014 registered with IANA since, accepted. */
  static const int valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                              1012, 1013, 1014, 3000, 3999, 4000, 4999};
  /* 7.9.x invalid, and the edges of every range. */
  static const int invalid[] = {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000,
                                2999, 5000, 65535};
  record r = {0};
  for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
    assert_true(ws_close_code_valid(valid[i]));
    w.n = 0;
    close_frame(&w, WS_ROLE_SERVER, valid[i], "", 0);
    run_splits(&r, WS_ROLE_SERVER, 0, &w);
    assert_int_equal(r.rc, 0);
    expect_event(&r, 0, 'c', valid[i], "", 0);
    rec_free(&r);
  }
  for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
    assert_false(ws_close_code_valid(invalid[i]));
    for (int role = 0; role < 2; role++) {
      w.n = 0;
      close_frame(&w, (ws_role)role, invalid[i], "bye", 3);
      run_splits(&r, (ws_role)role, 0, &w);
      assert_int_equal(r.rc, WS_EPROTO);
      assert_int_equal(r.close_code, 1002);
      assert_int_equal(r.n, 0);
      rec_free(&r);
    }
  }
}

/* ---- Autobahn 9.x: limits ----------------------------------------------- */

static void test_max_message(void **state) {
  static char payload[2000];
  record r = {0};
  memset(payload, 'x', sizeof(payload));
  for (int role = 0; role < 2; role++) {
    /* Exactly the maximum passes, in one frame or in fragments. */
    w.n = 0;
    w_frame(&w, (ws_role)role, FIN, WS_OP_TEXT, payload, 1000);
    w_frame(&w, (ws_role)role, 0, WS_OP_BINARY, payload, 600);
    w_frame(&w, (ws_role)role, FIN, WS_OP_CONTINUATION, payload, 400);
    run_splits(&r, (ws_role)role, 1000, &w);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(r.ev[1].len, 1000);
    rec_free(&r);
    /* One byte over, refused from the header alone: no payload is fed. */
    w.n = 0;
    w_frame(&w, (ws_role)role, FIN, WS_OP_TEXT, payload, 1001);
    size_t hdr = role == WS_ROLE_SERVER ? 8 : 4;
    run(&r, (ws_role)role, 1000, w.b, hdr, 1);
    assert_int_equal(r.rc, WS_ETOOBIG);
    assert_int_equal(r.close_code, 1009);
    /* Fragments: refused at the header of the fragment that goes over. */
    w.n = 0;
    w_frame(&w, (ws_role)role, 0, WS_OP_TEXT, payload, 600);
    w_frame(&w, (ws_role)role, FIN, WS_OP_PING, "", 0);
    w_frame(&w, (ws_role)role, FIN, WS_OP_CONTINUATION, payload, 401);
    run(&r, (ws_role)role, 1000, w.b, w.n - 401, 0);
    assert_int_equal(r.rc, WS_ETOOBIG);
    assert_int_equal(r.n, 1); /* the ping */
    rec_free(&r);
    /* A 64-bit length far above any maximum, and one with the high bit set
     * (the server's parser also needs the 4 bytes of masking key). */
    size_t n = role == WS_ROLE_SERVER ? 14 : 10;
    uint8_t b1 = role == WS_ROLE_SERVER ? 0xff : 0x7f;
    uint8_t huge[14] = {0x82, b1, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 1, 2, 3, 4};
    run(&r, (ws_role)role, 0, huge, n, 0);
    assert_int_equal(r.rc, WS_ETOOBIG);
    huge[2] = 0x80;
    run(&r, (ws_role)role, 0, huge, n, 1);
    assert_int_equal(r.rc, WS_EPROTO);
    assert_int_equal(r.close_code, 1002);
  }
}

/* A big message's buffer is not kept after it was delivered. */
static void test_buffer_released(void **state) {
  static char payload[20000];
  ws_parser p;
  record r = {0};
  memset(payload, 'b', sizeof(payload));
  w.n = 0;
  w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_BINARY, payload, sizeof(payload));
  ws_parser_init(&p, WS_ROLE_SERVER, 0);
  assert_int_equal(ws_parser_feed(&p, (const char *)w.b, w.n, &cbs, &r), 0);
  assert_int_equal(r.n, 1);
  assert_null(p.msg);
  assert_int_equal(p.msg_cap, 0);
  /* A small one keeps its buffer for the next message. */
  w.n = 0;
  w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_TEXT, "small", 5);
  assert_int_equal(ws_parser_feed(&p, (const char *)w.b, w.n, &cbs, &r), 0);
  assert_true(p.msg_cap > 0 && p.msg_cap <= WS_PARSER_KEEP_BYTES);
  ws_parser_free(&p);
  rec_free(&r);
}

/* ---- Callbacks that stop ------------------------------------------------ */

static void test_callback_stops(void **state) {
  record r = {.stop_after = 2};
  w.n = 0;
  w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_TEXT, "one", 3);
  w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_PING, "two", 3);
  w_frame(&w, WS_ROLE_SERVER, FIN, WS_OP_TEXT, "three", 5);
  run_splits(&r, WS_ROLE_SERVER, 0, &w);
  assert_int_equal(r.rc, WS_ESTOPPED);
  assert_int_equal(r.close_code, 0);
  assert_null(r.error);
  assert_int_equal(r.n, 2);
  rec_free(&r);
  /* NULL callbacks drop events. */
  ws_parser p;
  ws_parser_init(&p, WS_ROLE_SERVER, 0);
  assert_int_equal(ws_parser_feed(&p, (const char *)w.b, w.n, NULL, NULL), 0);
  ws_parser_free(&p);
}

/* ---- Encoder ------------------------------------------------------------ */

static void test_frame_header(void **state) {
  uint8_t h[WS_MAX_HEADER];
  static const uint8_t m[4] = {1, 2, 3, 4};
  assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 125, NULL), 2);
  assert_memory_equal(h, "\x81\x7d", 2);
  assert_int_equal(ws_frame_header(h, WS_OP_BINARY, false, 126, NULL), 4);
  assert_memory_equal(h, "\x02\x7e\x00\x7e", 4);
  assert_int_equal(ws_frame_header(h, WS_OP_BINARY, true, 65535, NULL), 4);
  assert_memory_equal(h, "\x82\x7e\xff\xff", 4);
  assert_int_equal(ws_frame_header(h, WS_OP_TEXT, true, 65536, m), 14);
  assert_memory_equal(h, "\x81\xff\x00\x00\x00\x00\x00\x01\x00\x00\x01\x02\x03\x04", 14);
  assert_int_equal(ws_frame_header(h, WS_OP_PING, true, 0, m), 6);
  assert_memory_equal(h, "\x89\x80\x01\x02\x03\x04", 6);
}

static void test_mask(void **state) {
  uint8_t src[67], dst[67], want[67];
  for (size_t i = 0; i < sizeof(src); i++) src[i] = (uint8_t)(i * 7 + 1);
  for (uint64_t off = 0; off < 4; off++) {
    for (size_t n = 0; n <= sizeof(src); n++) {
      for (size_t i = 0; i < n; i++) want[i] = src[i] ^ key[(off + i) & 3];
      ws_mask(dst, src, n, key, off);
      assert_memory_equal(dst, want, n);
      memcpy(dst, src, n);
      ws_mask(dst, dst, n, key, off); /* in place */
      assert_memory_equal(dst, want, n);
    }
  }
}

static void test_encode_round_trip(void **state) {
  static char payload[70000];
  static const size_t lens[] = {0, 5, 125, 126, 65535, 65536, 70000};
  uint64_t live = buf_live_count();
  for (size_t i = 0; i < sizeof(payload); i++) payload[i] = (char)('A' + i % 50);
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    record r = {0};
    td_buf *s = ws_frame_encode(WS_OP_TEXT, payload, lens[i]);
    td_buf *c = ws_frame_encode_masked(WS_OP_BINARY, payload, lens[i]);
    assert_non_null(s);
    assert_non_null(c);
    assert_int_equal(c->len, s->len + 4);
    assert_int_equal((uint8_t)c->data[1] & 0x80, 0x80);
    run(&r, WS_ROLE_CLIENT, 70000, (const uint8_t *)s->data, s->len, 0);
    assert_int_equal(r.rc, 0);
    expect_event(&r, 0, 'm', WS_OP_TEXT, payload, lens[i]);
    rec_free(&r);
    run(&r, WS_ROLE_SERVER, 70000, (const uint8_t *)c->data, c->len, 1);
    assert_int_equal(r.rc, 0);
    expect_event(&r, 0, 'm', WS_OP_BINARY, payload, lens[i]);
    rec_free(&r);
    buf_unref(s);
    buf_unref(c);
  }
  /* A fresh masking key per frame. */
  uint8_t first[4];
  bool differs = false;
  for (int i = 0; i < 8; i++) {
    td_buf *c = ws_frame_encode_masked(WS_OP_PING, "", 0);
    if (i == 0) memcpy(first, c->data + 2, 4);
    else if (memcmp(first, c->data + 2, 4) != 0) differs = true;
    buf_unref(c);
  }
  assert_true(differs);
  assert_int_equal(buf_live_count(), live);
}

static void test_encode_close(void **state) {
  record r = {0};
  /* 200 two-byte characters: cut to 123 bytes or fewer, on a boundary. */
  char reason[401];
  for (int i = 0; i < 200; i++) memcpy(reason + 2 * i, "\xc3\xa9", 2);
  reason[400] = 0;
  td_buf *b = ws_frame_encode_close(1000, reason);
  assert_int_equal(b->len, 2 + 2 + 122);
  run(&r, WS_ROLE_CLIENT, 0, (const uint8_t *)b->data, b->len, 0);
  assert_int_equal(r.rc, 0);
  expect_event(&r, 0, 'c', 1000, reason, 122);
  rec_free(&r);
  buf_unref(b);

  b = ws_frame_encode_close_masked(WS_CLOSE_GOING_AWAY, "bye");
  run(&r, WS_ROLE_SERVER, 0, (const uint8_t *)b->data, b->len, 1);
  expect_event(&r, 0, 'c', 1001, "bye", 3);
  rec_free(&r);
  buf_unref(b);

  /* Codes that may not go on the wire give an empty close frame. */
  b = ws_frame_encode_close(WS_CLOSE_NO_STATUS, "x");
  assert_int_equal(b->len, 2);
  assert_memory_equal(b->data, "\x88\x00", 2);
  buf_unref(b);
  b = ws_frame_encode_close(0, NULL);
  assert_int_equal(b->len, 2);
  buf_unref(b);

  /* A parser's error is a close frame the peer accepts. */
  ws_parser p;
  ws_parser_init(&p, WS_ROLE_SERVER, 0);
  assert_int_equal(ws_parser_feed(&p, "\x83\x80\0\0\0\0", 6, &cbs, &r), WS_EPROTO);
  b = ws_frame_encode_close(ws_parser_close_code(&p), ws_parser_error(&p));
  run(&r, WS_ROLE_CLIENT, 0, (const uint8_t *)b->data, b->len, 0);
  expect_event(&r, 0, 'c', 1002, ws_parser_error(&p), strlen(ws_parser_error(&p)));
  rec_free(&r);
  buf_unref(b);
  ws_parser_free(&p);
}

/* ---- Handshake ---------------------------------------------------------- */

static void test_accept_key(void **state) {
  char out[WS_ACCEPT_LEN + 1];
  const char *k = "dGhlIHNhbXBsZSBub25jZQ==";
  assert_int_equal(ws_accept_key(k, strlen(k), out), 0);
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert_true(ws_accept_matches(k, strlen(k), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", WS_ACCEPT_LEN));
  assert_false(ws_accept_matches(k, strlen(k), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo_", WS_ACCEPT_LEN));
  assert_false(ws_accept_matches(k, strlen(k), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo", WS_ACCEPT_LEN - 1));

  static const char *const bad[] = {
      "",
      "dGhlIHNhbXBsZSBub25jZQ",     /* no padding */
      "dGhlIHNhbXBsZSBub25jZQ=",
      "dGhlIHNhbXBsZSBub25jZQ===",
      "dGhlIHNhbXBsZSBub25jZR==",   /* non-canonical last digit */
      "dGhlIHNhbXBsZSBub25j*Q==",   /* not base64 */
      "dGhlIHNhbXBsZSBub25jZQ=A",
      "dGhlIHNhbXBsZSBub25jZWE=",   /* 17 bytes */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_false(ws_key_valid(bad[i], strlen(bad[i])));
    assert_int_equal(ws_accept_key(bad[i], strlen(bad[i]), out), -EINVAL);
  }
}

static void test_client_key(void **state) {
  char a[WS_KEY_LEN + 1], b[WS_KEY_LEN + 1], acc[WS_ACCEPT_LEN + 1];
  ws_client_key(a);
  ws_client_key(b);
  assert_int_equal(strlen(a), WS_KEY_LEN);
  assert_true(ws_key_valid(a, strlen(a)));
  assert_true(ws_key_valid(b, strlen(b)));
  assert_string_not_equal(a, b);
  assert_int_equal(ws_accept_key(a, strlen(a), acc), 0);
  assert_true(ws_accept_matches(a, strlen(a), acc, strlen(acc)));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc_examples),
      cmocka_unit_test(test_framing_lengths),
      cmocka_unit_test(test_non_minimal_lengths),
      cmocka_unit_test(test_zero_copy),
      cmocka_unit_test(test_ping_pong),
      cmocka_unit_test(test_reserved_bits),
      cmocka_unit_test(test_reserved_opcodes),
      cmocka_unit_test(test_fragmentation),
      cmocka_unit_test(test_fragmentation_errors),
      cmocka_unit_test(test_masking_per_role),
      cmocka_unit_test(test_utf8_valid_fragmented),
      cmocka_unit_test(test_utf8_invalid),
      cmocka_unit_test(test_utf8_fail_fast),
      cmocka_unit_test(test_close),
      cmocka_unit_test(test_close_codes),
      cmocka_unit_test(test_max_message),
      cmocka_unit_test(test_buffer_released),
      cmocka_unit_test(test_callback_stops),
      cmocka_unit_test(test_frame_header),
      cmocka_unit_test(test_mask),
      cmocka_unit_test(test_encode_round_trip),
      cmocka_unit_test(test_encode_close),
      cmocka_unit_test(test_accept_key),
      cmocka_unit_test(test_client_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
