/* ws_deflate: the negotiation grammar and RFC 7692 7.1's rules, the shared
 * compressed variant (round trip through zlib, window fit, counters), the
 * bounded inflater, and the frame parser with permessage-deflate on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "base/buf.h"
#include "http/ws_deflate.h"
#include "http/ws_frame.h"

#define ACCEPTED "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"

static int negotiate(const char *v, wsd_agreement *z) {
  memset(z, 0, sizeof(*z));
  return wsd_negotiate(v, strlen(v), z);
}

static void test_negotiate_accepts(void **state) {
  static const struct {
    const char *offer;
    int bits;
    const char *response;
  } cases[] = {
      {"permessage-deflate", 15, ACCEPTED "\r\n"},
      {"permessage-deflate; client_max_window_bits", 15, ACCEPTED "\r\n"},
      {"permessage-deflate;client_max_window_bits=8", 15, ACCEPTED "\r\n"},
      {"permessage-deflate; server_max_window_bits=9", 9, ACCEPTED "; server_max_window_bits=9\r\n"},
      {"permessage-deflate; server_max_window_bits=\"15\"", 15, ACCEPTED "; server_max_window_bits=15\r\n"},
      {"permessage-deflate\t;\tserver_no_context_takeover ; client_no_context_takeover", 15, ACCEPTED "\r\n"},
      {"foo; bar=\"a\\\"b\", permessage-deflate; server_max_window_bits=99, permessage-deflate; "
       "server_max_window_bits=12",
       12, ACCEPTED "; server_max_window_bits=12\r\n"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    wsd_agreement z;
    assert_int_equal(negotiate(cases[i].offer, &z), 1);
    assert_int_equal(z.window_bits, cases[i].bits);
    assert_string_equal(z.response, cases[i].response);
  }
}

static void test_negotiate_declines(void **state) {
  static const char *const offers[] = {
      "", "x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=7",
      "permessage-deflate; server_max_window_bits=16", "permessage-deflate; server_max_window_bits=010",
      "permessage-deflate; server_max_window_bits", "permessage-deflate; client_max_window_bits=\"\"",
      "permessage-deflate; client_max_window_bits=\"9 \"", "permessage-deflate; client_no_context_takeover=true",
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
      "permessage-deflate; server_max_window_bits=123456789012345", "permessage-deflate; unknown",
  };
  for (size_t i = 0; i < sizeof(offers) / sizeof(offers[0]); i++) {
    wsd_agreement z;
    assert_int_equal(negotiate(offers[i], &z), 0);
    assert_int_equal(z.window_bits, 0);
  }
}

static void test_negotiate_malformed(void **state) {
  static const char *const values[] = {
      ";", "permessage-deflate;", "permessage-deflate; =1", "permessage-deflate; a=",
      "permessage-deflate; a=\"unterminated", "permessage-deflate; a=\"x\\", "permessage-deflate x",
      "permessage-deflate; a=b c", "permessage-deflate, ;", "(permessage-deflate)",
  };
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    wsd_agreement z;
    assert_int_equal(negotiate(values[i], &z), -EINVAL);
  }
}

/* Inflates a server frame the way a client with window `bits` does. */
static size_t client_inflate(const td_buf *f, int bits, char *out, size_t cap) {
  size_t off = ((uint8_t)f->data[1] & 0x7F) == 126 ? 4 : ((uint8_t)f->data[1] & 0x7F) == 127 ? 10 : 2;
  z_stream zs = {0};
  assert_int_equal(inflateInit2(&zs, -bits), Z_OK);
  unsigned char in[70000];
  size_t n = f->len - off;
  assert_true(n + 4 <= sizeof(in));
  memcpy(in, f->data + off, n);
  memcpy(in + n, "\x00\x00\xff\xff", 4);
  zs.next_in = in;
  zs.avail_in = (uInt)(n + 4);
  zs.next_out = (Bytef *)out;
  zs.avail_out = (uInt)cap;
  int rc = inflate(&zs, Z_SYNC_FLUSH);
  assert_true(rc == Z_OK || rc == Z_STREAM_END);
  size_t got = zs.total_out;
  inflateEnd(&zs);
  return got;
}

static void test_variant_round_trip(void **state) {
  char text[20000], out[20000];
  for (size_t i = 0; i < sizeof(text); i++) text[i] = "{\"S\":\"AAPL\",\"bp\":1.5}"[i % 22];
  wsd_counters = (wsd_stats){0};
  wsd_variant v = wsd_variant_of(ws_frame_encode(WS_OP_TEXT, text, sizeof(text)));
  assert_ptr_equal(wsd_pick(&v, 0), v.plain); /* no deflate: plain, and nothing compressed */
  assert_int_equal(wsd_counters.frames_compressed, 0);
  td_buf *z = wsd_pick(&v, 15);
  assert_ptr_not_equal(z, v.plain);
  assert_int_equal((uint8_t)z->data[0], 0x80 | 0x40 | WS_OP_TEXT); /* FIN, RSV1, text */
  assert_ptr_equal(wsd_pick(&v, 15), z);                           /* built once, shared */
  assert_int_equal(wsd_counters.frames_compressed, 1);
  assert_int_equal(wsd_counters.sent_compressed, 2);
  assert_int_equal(wsd_counters.bytes_saved, 2 * (uint64_t)(v.plain->len - z->len));
  assert_int_equal(client_inflate(z, 15, out, sizeof(out)), sizeof(text));
  assert_memory_equal(out, text, sizeof(text));
  /* a 20000-byte message does not fit a 2^14 window: that client gets it plain */
  assert_ptr_equal(wsd_pick(&v, 14), v.plain);
  wsd_variant_done(&v);
}

static void test_variant_small_window_fits(void **state) {
  char text[512], out[600];
  for (size_t i = 0; i < sizeof(text); i++) text[i] = "abcdefgh"[i % 8];
  wsd_variant v = wsd_variant_of(ws_frame_encode(WS_OP_TEXT, text, sizeof(text)));
  td_buf *z = wsd_pick(&v, 9);
  assert_ptr_not_equal(z, v.plain);
  assert_int_equal(client_inflate(z, 9, out, sizeof(out)), sizeof(text));
  assert_memory_equal(out, text, sizeof(text));
  wsd_variant_done(&v);
}

static void test_variant_plain_when_not_smaller(void **state) {
  char rnd[300];
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < sizeof(rnd); i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    rnd[i] = (char)x;
  }
  wsd_variant v = wsd_variant_of(ws_frame_encode(WS_OP_BINARY, rnd, sizeof(rnd)));
  assert_ptr_equal(wsd_pick(&v, 15), v.plain);
  wsd_variant_done(&v);
  wsd_variant s = wsd_variant_of(ws_frame_encode(WS_OP_TEXT, "{\"type\":\"x\"}", 12)); /* too short */
  assert_ptr_equal(wsd_pick(&s, 15), s.plain);
  wsd_variant_done(&s);
  wsd_variant none = wsd_variant_of(NULL);
  assert_null(wsd_pick(&none, 15));
  wsd_variant_done(&none);
}

static size_t client_deflate(const void *in, size_t n, unsigned char *out, size_t cap) {
  z_stream zs = {0};
  assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  zs.next_in = (Bytef *)in;
  zs.avail_in = (uInt)n;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  assert_int_equal(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
  size_t got = zs.total_out - 4;
  deflateEnd(&zs);
  return got;
}

static void test_inflate_limit(void **state) {
  static unsigned char zeros[1 << 20], z[8192];
  size_t zn = client_deflate(zeros, sizeof(zeros), z, sizeof(z));
  const char *out;
  size_t n;
  wsd_counters = (wsd_stats){0};
  assert_int_equal(wsd_inflate(z, zn, sizeof(zeros), &out, &n), 0);
  assert_int_equal(n, sizeof(zeros));
  assert_int_equal(wsd_inflate(z, zn, sizeof(zeros) - 1, &out, &n), -EMSGSIZE);
  assert_int_equal(wsd_inflate("\xff\xff\xff", 3, 100, &out, &n), -EBADMSG);
  assert_int_equal(wsd_inflate("", 0, 100, &out, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(wsd_counters.inflate_too_big, 1);
  assert_int_equal(wsd_counters.inflate_bad_data, 1);
  assert_int_equal(wsd_counters.messages_inflated, 2);
  wsd_release();
}

/* ---- the parser with permessage-deflate ---- */

typedef struct {
  int messages;
  char last[256];
  size_t last_len;
} seen;

static int on_message(void *ud, ws_opcode op, const char *data, size_t len) {
  seen *s = ud;
  s->messages++;
  s->last_len = len < sizeof(s->last) ? len : sizeof(s->last);
  memcpy(s->last, data, s->last_len);
  return 0;
}

static const ws_callbacks cbs = {on_message, NULL, NULL, NULL};

/* A masked client frame with the given first byte. */
static size_t client_frame(uint8_t *out, uint8_t b0, const void *p, size_t n) {
  static const uint8_t key[4] = {1, 2, 3, 4};
  size_t h = ws_frame_header(out, WS_OP_TEXT, false, n, key);
  out[0] = b0;
  ws_mask(out + h, p, n, key, 0);
  return h + n;
}

static void test_parser_inflates_fragments(void **state) {
  const char *msg = "{\"action\":\"list\",\"pad\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}";
  unsigned char z[256];
  uint8_t wire[512];
  size_t zn = client_deflate(msg, strlen(msg), z, sizeof(z)), n = 0;
  n += client_frame(wire + n, 0x40 | WS_OP_TEXT, z, 2);          /* RSV1 on the first frame only */
  n += client_frame(wire + n, WS_OP_CONTINUATION, z + 2, 3);
  n += client_frame(wire + n, 0x80 | WS_OP_CONTINUATION, z + 5, zn - 5);
  ws_parser p;
  seen s = {0};
  ws_parser_init(&p, WS_ROLE_SERVER, 4096);
  ws_parser_allow_deflate(&p);
  for (size_t i = 0; i < n; i++) assert_int_equal(ws_parser_feed(&p, (char *)wire + i, 1, &cbs, &s), 0);
  assert_int_equal(s.messages, 1);
  assert_int_equal(s.last_len, strlen(msg));
  assert_memory_equal(s.last, msg, strlen(msg));
  ws_parser_free(&p);
}

static void test_parser_rsv1_rules(void **state) {
  static const struct {
    bool deflate;
    uint8_t b0a, b0b; /* two frames: the second is a continuation when b0b != 0 */
    int close;
  } cases[] = {
      {false, 0x80 | 0x40 | WS_OP_TEXT, 0, WS_CLOSE_PROTOCOL_ERROR},
      {true, 0x40 | WS_OP_TEXT, 0x80 | 0x40 | WS_OP_CONTINUATION, WS_CLOSE_PROTOCOL_ERROR},
      {true, 0x80 | 0x40 | WS_OP_PING, 0, WS_CLOSE_PROTOCOL_ERROR},
      {true, 0x80 | 0x20 | WS_OP_TEXT, 0, WS_CLOSE_PROTOCOL_ERROR},
      {true, 0x80 | 0x40 | WS_OP_TEXT, 0, WS_CLOSE_INVALID_DATA}, /* "\xff\xff" is not DEFLATE */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uint8_t wire[64];
    size_t n = client_frame(wire, cases[i].b0a, "\xff\xff", 2);
    if (cases[i].b0b) n += client_frame(wire + n, cases[i].b0b, "\xff", 1);
    ws_parser p;
    seen s = {0};
    ws_parser_init(&p, WS_ROLE_SERVER, 4096);
    if (cases[i].deflate) ws_parser_allow_deflate(&p);
    assert_true(ws_parser_feed(&p, (char *)wire, n, &cbs, &s) < 0);
    assert_int_equal(ws_parser_close_code(&p), cases[i].close);
    assert_int_equal(s.messages, 0);
    ws_parser_free(&p);
  }
  wsd_release();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_negotiate_accepts),
      cmocka_unit_test(test_negotiate_declines),
      cmocka_unit_test(test_negotiate_malformed),
      cmocka_unit_test(test_variant_round_trip),
      cmocka_unit_test(test_variant_small_window_fits),
      cmocka_unit_test(test_variant_plain_when_not_smaller),
      cmocka_unit_test(test_inflate_limit),
      cmocka_unit_test(test_parser_inflates_fragments),
      cmocka_unit_test(test_parser_rsv1_rules),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  wsd_release();
  return rc;
}
