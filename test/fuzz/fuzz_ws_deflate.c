/* libFuzzer harness for permessage-deflate (ws_deflate.c and the parser's
 * compressed path in ws_frame.c).
 *
 * Input: 2 control bytes, then the data. Byte 0 picks the mode (low 2 bits),
 * byte 1 a limit of (byte1 + 1) * 64 bytes:
 *   0: the data is a Sec-WebSocket-Extensions value: an accepted offer names
 *      a window of 8-15 and a response line ending in CRLF.
 *   1: the data is a client's compressed message: inflation never gives more
 *      than the limit, and repeating it gives the same result.
 *   2: the data is a client byte stream to a server parser that agreed to
 *      deflate, with the limit as its maximum message: no message exceeds it,
 *      text is valid UTF-8, a failure closes with 1002, 1007, 1009 or 1011.
 *   3: the data is a server message: its compressed variant, when there is
 *      one, is smaller and inflates back to the data. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/utf8.h"
#include "http/ws_deflate.h"
#include "http/ws_frame.h"

#define FUZZ_CONTROL_BYTES 2

static void negotiation(const uint8_t *d, size_t n) {
  wsd_agreement z;
  memset(&z, 0, sizeof(z));
  int rc = wsd_negotiate((const char *)d, n, &z);
  if (rc != 1 && rc != 0 && rc != -EINVAL) abort();
  if (rc != 1) return;
  size_t len = strlen(z.response);
  if (z.window_bits < WSD_MIN_WINDOW_BITS || z.window_bits > WSD_MAX_WINDOW_BITS) abort();
  if (len < 2 || strcmp(z.response + len - 2, "\r\n") || strncmp(z.response, "Sec-WebSocket-Extensions: ", 26))
    abort();
}

static void inflation(const uint8_t *d, size_t n, size_t limit) {
  const char *out;
  size_t got, again;
  int a = wsd_inflate(d, n, limit, &out, &got);
  if (a == 0 && got > limit) abort();
  uint64_t h = 0;
  for (size_t i = 0; a == 0 && i < got; i++) h = h * 31 + (uint8_t)out[i];
  int b = wsd_inflate(d, n, limit, &out, &again);
  uint64_t h2 = 0;
  for (size_t i = 0; b == 0 && i < again; i++) h2 = h2 * 31 + (uint8_t)out[i];
  if (a != b || (a == 0 && (got != again || h != h2))) abort();
}

static size_t fuzz_max;

static int on_message(void *ud, ws_opcode op, const char *d, size_t n) {
  if (n > fuzz_max) abort();
  if (op == WS_OP_TEXT && !utf8_valid(d, n)) abort();
  return 0;
}

static void parsing(const uint8_t *d, size_t n, size_t limit) {
  static const ws_callbacks cbs = {on_message, NULL, NULL, NULL};
  ws_parser p;
  fuzz_max = limit;
  ws_parser_init(&p, WS_ROLE_SERVER, limit);
  ws_parser_allow_deflate(&p);
  int rc = ws_parser_feed(&p, (const char *)d, n, &cbs, NULL);
  if (rc && rc != WS_ESTOPPED) {
    int code = ws_parser_close_code(&p);
    if (code != 1002 && code != 1007 && code != 1009 && code != 1011) abort();
  }
  ws_parser_free(&p);
}

static void round_trip(const uint8_t *d, size_t n) {
  uint64_t live = buf_live_count();
  wsd_variant v = wsd_variant_of(ws_frame_encode(WS_OP_TEXT, d, n));
  if (!v.plain) abort();
  td_buf *z = wsd_pick(&v, WSD_MAX_WINDOW_BITS);
  if (z != v.plain) {
    if (z->len >= v.plain->len || !((uint8_t)z->data[0] & 0x40)) abort();
    size_t off = ((uint8_t)z->data[1] & 0x7F) == 127 ? 10 : ((uint8_t)z->data[1] & 0x7F) == 126 ? 4 : 2;
    const char *out;
    size_t got;
    if (wsd_inflate(z->data + off, z->len - off, n, &out, &got) != 0) abort();
    if (got != n || memcmp(out, d, n)) abort();
  }
  wsd_variant_done(&v);
  if (buf_live_count() != live) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < FUZZ_CONTROL_BYTES) return 0;
  int mode = data[0] & 3;
  size_t limit = ((size_t)data[1] + 1) * 64;
  data += FUZZ_CONTROL_BYTES;
  size -= FUZZ_CONTROL_BYTES;
  switch (mode) {
  case 0: negotiation(data, size); break;
  case 1: inflation(data, size, limit); break;
  case 2: parsing(data, size, limit); break;
  default: round_trip(data, size); break;
  }
  return 0;
}
