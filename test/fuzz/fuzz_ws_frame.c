/* libFuzzer harness for the WebSocket frame parser.
 *
 * Input: 4 control bytes, then the byte stream. The control bytes seed the
 * split sizes, the maximum message size and after how many events a callback
 * stops parsing. The stream is parsed by both roles, once whole and once in
 * the chosen splits: the two runs must agree event for event (the parser must
 * not depend on how TCP cut the bytes), and every event must respect the
 * rules the parser enforces (valid UTF-8 text, valid close codes, control
 * payloads of at most 125 bytes, messages within the maximum). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/td_limits.h"
#include "base/utf8.h"
#include "http/ws_frame.h"

#define FUZZ_CONTROL_BYTES 4

typedef struct {
  uint64_t hash; /* FNV-1a over every event */
  size_t events;
  size_t stop_after;
  size_t max;
} fuzz_rec;

static void mix(fuzz_rec *r, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) r->hash = (r->hash ^ b[i]) * 0x100000001b3ull;
}

static int event(fuzz_rec *r, int kind, const char *data, size_t len) {
  mix(r, &kind, sizeof(kind));
  mix(r, &len, sizeof(len));
  mix(r, data, len);
  r->events++;
  return r->stop_after && r->events >= r->stop_after;
}

static int on_message(void *ud, ws_opcode op, const char *d, size_t n) {
  fuzz_rec *r = ud;
  if (op != WS_OP_TEXT && op != WS_OP_BINARY) abort();
  if (n > r->max) abort();
  if (op == WS_OP_TEXT && !utf8_valid(d, n)) abort();
  return event(r, op, d, n);
}

static int on_ping(void *ud, const char *d, size_t n) {
  if (n > WS_MAX_CONTROL_PAYLOAD) abort();
  return event(ud, 'i', d, n);
}

static int on_pong(void *ud, const char *d, size_t n) {
  if (n > WS_MAX_CONTROL_PAYLOAD) abort();
  return event(ud, 'o', d, n);
}

static int on_close(void *ud, int code, const char *d, size_t n) {
  if (code != WS_CLOSE_NO_STATUS && !ws_close_code_valid(code)) abort();
  if (n > WS_MAX_CLOSE_REASON || !utf8_valid(d, n)) abort();
  return event(ud, code, d, n);
}

static const ws_callbacks cbs = {on_message, on_ping, on_pong, on_close};

/* Feeds data in pieces drawn from a small generator seeded by the input. */
static int run(ws_role role, const uint8_t *data, size_t len, uint32_t seed, fuzz_rec *r) {
  ws_parser p;
  int rc = 0;
  size_t off = 0;
  ws_parser_init(&p, role, r->max);
  while (off < len) {
    size_t k = len - off;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      k = (size_t)1 + (seed >> 16) % (1u << (seed >> 28) % 12);
      if (k > len - off) k = len - off;
    }
    rc = ws_parser_feed(&p, (const char *)data + off, k, &cbs, r);
    off += k;
    if (rc) break;
  }
  if (rc && rc != WS_ESTOPPED) {
    int code = ws_parser_close_code(&p);
    const char *why = ws_parser_error(&p);
    if (code != 1002 && code != 1007 && code != 1009 && code != 1011) abort();
    if (!why || strlen(why) > WS_MAX_CLOSE_REASON) abort();
  }
  mix(r, &rc, sizeof(rc));
  ws_parser_free(&p);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < FUZZ_CONTROL_BYTES) return 0;
  uint32_t seed = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | 1u;
  size_t max = data[3] & 0x80 ? 1 + (size_t)(data[3] & 0x7F) * 64 : 0;
  size_t stop_after = data[3] & 0x07;
  data += FUZZ_CONTROL_BYTES;
  size -= FUZZ_CONTROL_BYTES;

  for (int role = 0; role < 2; role++) {
    fuzz_rec whole = {0xcbf29ce484222325ull, 0, stop_after, max ? max : TD_DEFAULT_WS_MAX_MESSAGE};
    fuzz_rec split = whole;
    int a = run((ws_role)role, data, size, 0, &whole);
    int b = run((ws_role)role, data, size, seed, &split);
    if (a != b || whole.events != split.events || whole.hash != split.hash) abort();
  }

  /* Encoder round trip: the stream as one binary message, both directions. */
  uint64_t live = buf_live_count();
  td_buf *s = ws_frame_encode(WS_OP_BINARY, data, size);
  td_buf *c = ws_frame_encode_masked(WS_OP_BINARY, data, size);
  if (!s || !c) abort();
  fuzz_rec rs = {0, 0, 0, size}, rc = {0, 0, 0, size}, want = {0, 0, 0, size};
  event(&want, WS_OP_BINARY, (const char *)data, size);
  mix(&want, &(int){0}, sizeof(int));
  run(WS_ROLE_CLIENT, (const uint8_t *)s->data, s->len, seed, &rs);
  run(WS_ROLE_SERVER, (const uint8_t *)c->data, c->len, seed, &rc);
  if (rs.hash != want.hash || rc.hash != want.hash) abort();
  buf_unref(s);
  buf_unref(c);
  if (buf_live_count() != live) abort();
  return 0;
}
