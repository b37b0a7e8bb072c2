/* WebSocket (RFC 6455) frames: an incremental parser for either role, the
 * encoder, and the handshake keys. See ws_frame.h and docs/ws_frame.md. */
#include "http/ws_frame.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/td_limits.h"
#include "base/rng.h"
#include "base/base64.h"
#include "http/ws_deflate.h"

/* RFC 6455 1.3: appended to the client's key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
#define WS_GUID_LEN (sizeof(ws_guid) - 1)
/* First allocation of a reassembly buffer; it doubles from there. */
#define WS_MSG_MIN_CAP 256

/* ---- Parser -------------------------------------------------------------- */

static bool ws_is_control(uint8_t opcode) { return opcode & 0x8; }

void ws_parser_init(ws_parser *p, ws_role role, size_t max_message) {
  memset(p, 0, sizeof(*p));
  p->state = WS_PS_HEADER;
  p->role = role;
  p->max_message = max_message ? max_message : TD_DEFAULT_WS_MAX_MESSAGE;
  p->hdr_need = 2;
  utf8_init(&p->utf8);
}

void ws_parser_allow_deflate(ws_parser *p) { p->deflate = true; }

void ws_parser_free(ws_parser *p) {
  free(p->msg);
  p->msg = NULL;
  p->msg_len = p->msg_cap = 0;
}

int ws_parser_close_code(const ws_parser *p) {
  return p->state == WS_PS_FAILED ? p->close_code : 0;
}

const char *ws_parser_error(const ws_parser *p) {
  return p->state == WS_PS_FAILED ? p->error : NULL;
}

/* Every failure goes through here: the state becomes sticky. */
static void ws_fail(ws_parser *p, int err, const char *why) {
  p->state = WS_PS_FAILED;
  p->err = err;
  p->error = why;
  switch (err) {
  case WS_EUTF8: p->close_code = WS_CLOSE_INVALID_DATA; break;
  case WS_ETOOBIG: p->close_code = WS_CLOSE_TOO_BIG; break;
  case WS_ENOMEM: p->close_code = WS_CLOSE_INTERNAL_ERROR; break;
  case WS_EDEFLATE: p->close_code = WS_CLOSE_INVALID_DATA; break;
  default: p->close_code = WS_CLOSE_PROTOCOL_ERROR; break;
  }
}

/* A callback's answer: non-zero stops parsing. */
static void ws_called(ws_parser *p, int rc) {
  if (rc != 0) p->state = WS_PS_STOPPED;
}

/* Checks the first two header bytes, the only ones that say what the frame
 * is, and learns how many more header bytes follow. */
static void ws_header_start(ws_parser *p) {
  uint8_t b0 = p->hdr[0], b1 = p->hdr[1], len7 = b1 & 0x7F;
  p->fin = b0 & 0x80;
  p->opcode = b0 & 0x0F;
  p->masked = b1 & 0x80;

  p->rsv1 = b0 & 0x40;
  if (b0 & 0x30 || (p->rsv1 && !p->deflate)) {
    ws_fail(p, WS_EPROTO, "reserved bits set without an extension");
    return;
  }
  /* RFC 7692 6.1: RSV1 marks the first frame of a compressed message only. */
  if (p->rsv1 && (p->opcode == WS_OP_CONTINUATION || ws_is_control(p->opcode))) {
    ws_fail(p, WS_EPROTO, p->opcode ? "RSV1 on a control frame" : "RSV1 on a continuation frame");
    return;
  }
  switch (p->opcode) {
  case WS_OP_CONTINUATION:
    if (!p->in_message) { ws_fail(p, WS_EPROTO, "continuation frame without a message"); return; }
    break;
  case WS_OP_TEXT:
  case WS_OP_BINARY:
    if (p->in_message) { ws_fail(p, WS_EPROTO, "data frame inside a fragmented message"); return; }
    break;
  case WS_OP_CLOSE:
  case WS_OP_PING:
  case WS_OP_PONG:
    if (!p->fin) { ws_fail(p, WS_EPROTO, "fragmented control frame"); return; }
    if (len7 > WS_MAX_CONTROL_PAYLOAD) { ws_fail(p, WS_EPROTO, "control frame too long"); return; }
    break;
  default:
    ws_fail(p, WS_EPROTO, "reserved opcode");
    return;
  }
  /* RFC 6455 5.1: a server closes on an unmasked client frame; a client on a
   * masked server frame. */
  if (p->masked != (p->role == WS_ROLE_SERVER)) {
    ws_fail(p, WS_EPROTO, p->masked ? "masked frame from a server" : "unmasked frame from a client");
    return;
  }
  p->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (p->masked ? 4 : 0);
}

static void ws_frame_end(ws_parser *p, const ws_callbacks *cb, void *ud);

/* The whole header is in: length, key, and the size limit, which is checked
 * before a single payload byte arrives. */
static void ws_header_done(ws_parser *p, const ws_callbacks *cb, void *ud) {
  uint64_t len = p->hdr[1] & 0x7F;
  size_t i = 2;
  if (len == 126) {
    len = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
    i = 4;
  } else if (len == 127) {
    len = 0;
    for (i = 2; i < 10; i++) len = len << 8 | p->hdr[i];
    if (len >> 63) { ws_fail(p, WS_EPROTO, "64-bit length with the high bit set"); return; }
  }
  if (p->masked) memcpy(p->mask, p->hdr + i, 4);
  p->frame_len = len;
  p->frame_done = 0;
  p->hdr_have = 0;
  p->hdr_need = 2;

  if (!ws_is_control(p->opcode)) {
    size_t base = p->opcode == WS_OP_CONTINUATION ? p->msg_len : 0;
    if (len > p->max_message - base) { ws_fail(p, WS_ETOOBIG, "message too big"); return; }
    if (p->opcode != WS_OP_CONTINUATION) {
      p->msg_opcode = p->opcode;
      p->msg_compressed = p->rsv1;
      p->msg_len = 0;
      utf8_init(&p->utf8);
    }
    /* Until the frame with FIN ends it; checked only at frame boundaries. */
    p->in_message = true;
  }
  p->state = WS_PS_PAYLOAD;
  if (len == 0) ws_frame_end(p, cb, ud);
}

static void ws_header_bytes(ws_parser *p, const uint8_t *in, size_t len, size_t *off,
                            const ws_callbacks *cb, void *ud) {
  size_t n = p->hdr_need - p->hdr_have;
  if (n > len - *off) n = len - *off;
  memcpy(p->hdr + p->hdr_have, in + *off, n);
  p->hdr_have += n;
  *off += n;
  if (p->hdr_have < p->hdr_need) return;
  if (p->hdr_have == 2) {
    ws_header_start(p);
    if (p->state != WS_PS_HEADER || p->hdr_have < p->hdr_need) return;
  }
  ws_header_done(p, cb, ud);
}

static bool ws_reserve(ws_parser *p, size_t need) {
  if (need <= p->msg_cap) return true;
  size_t cap = p->msg_cap ? p->msg_cap : WS_MSG_MIN_CAP;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  /* need <= max_message always: the header check saw to that. */
  if (cap > p->max_message) cap = p->max_message;
  char *m = realloc(p->msg, cap);
  if (!m) return false;
  p->msg = m;
  p->msg_cap = cap;
  return true;
}

/* A compressed message is validated once inflated: its UTF-8 was not
 * checked as the compressed bytes came in. */
static bool ws_inflate_message(ws_parser *p, const char **data, size_t *len) {
  int rc = wsd_inflate(p->msg, p->msg_len, p->max_message, data, len);
  if (rc == -EMSGSIZE) ws_fail(p, WS_ETOOBIG, "inflated message too big");
  else if (rc == -ENOMEM) ws_fail(p, WS_ENOMEM, "out of memory");
  else if (rc) ws_fail(p, WS_EDEFLATE, "compressed message is not valid DEFLATE");
  else if (p->msg_opcode == WS_OP_TEXT && !utf8_valid(*data, *len))
    ws_fail(p, WS_EUTF8, "invalid UTF-8 in text message");
  return p->state != WS_PS_FAILED;
}

static void ws_message_end(ws_parser *p, const ws_callbacks *cb, void *ud) {
  const char *data = p->msg ? p->msg : "";
  size_t len = p->msg_len;
  p->in_message = false;
  if (p->msg_compressed) {
    if (!ws_inflate_message(p, &data, &len)) return;
  } else if (p->msg_opcode == WS_OP_TEXT && !utf8_complete(&p->utf8)) {
    ws_fail(p, WS_EUTF8, "text message ends inside a UTF-8 sequence");
    return;
  }
  if (cb->on_message) ws_called(p, cb->on_message(ud, (ws_opcode)p->msg_opcode, data, len));
  p->msg_len = 0;
  if (p->msg_cap > WS_PARSER_KEEP_BYTES) ws_parser_free(p);
}

/* Data payload bytes: unmasked into the reassembly buffer and validated as
 * they arrive, so that invalid UTF-8 fails on the fragment that carries it. */
static void ws_data_bytes(ws_parser *p, const uint8_t *src, size_t n) {
  if (!ws_reserve(p, p->msg_len + (size_t)(p->frame_len - p->frame_done))) {
    ws_fail(p, WS_ENOMEM, "out of memory");
    return;
  }
  char *dst = p->msg + p->msg_len;
  if (p->masked)
    ws_mask(dst, src, n, p->mask, p->frame_done);
  else
    memcpy(dst, src, n);
  p->msg_len += n;
  if (p->msg_opcode == WS_OP_TEXT && !p->msg_compressed && utf8_feed(&p->utf8, dst, n) < 0)
    ws_fail(p, WS_EUTF8, "invalid UTF-8 in text message");
}

/* The common case of a client: an unmasked, unfragmented frame entirely in
 * the caller's buffer goes to the callback without a copy. */
static bool ws_direct(ws_parser *p, const uint8_t *src, size_t avail, const ws_callbacks *cb,
                      void *ud) {
  if (p->masked || p->rsv1 || !p->fin || p->opcode == WS_OP_CONTINUATION || ws_is_control(p->opcode) ||
      p->frame_done != 0 || avail < p->frame_len)
    return false;
  size_t n = (size_t)p->frame_len;
  p->state = WS_PS_HEADER;
  p->in_message = false;
  if (p->opcode == WS_OP_TEXT && !utf8_valid(src, n)) {
    ws_fail(p, WS_EUTF8, "invalid UTF-8 in text message");
  } else if (cb->on_message) {
    ws_called(p, cb->on_message(ud, (ws_opcode)p->opcode, (const char *)src, n));
  }
  return true;
}

static void ws_payload_bytes(ws_parser *p, const uint8_t *in, size_t len, size_t *off,
                             const ws_callbacks *cb, void *ud) {
  const uint8_t *src = in + *off;
  size_t n = len - *off;
  if (ws_direct(p, src, n, cb, ud)) {
    *off += (size_t)p->frame_len;
    return;
  }
  if (n > p->frame_len - p->frame_done) n = (size_t)(p->frame_len - p->frame_done);
  *off += n;
  if (ws_is_control(p->opcode)) {
    char *dst = p->ctrl + p->frame_done;
    if (p->masked)
      ws_mask(dst, src, n, p->mask, p->frame_done);
    else
      memcpy(dst, src, n);
  } else {
    ws_data_bytes(p, src, n);
    if (p->state != WS_PS_PAYLOAD) return;
  }
  p->frame_done += n;
  if (p->frame_done == p->frame_len) ws_frame_end(p, cb, ud);
}

/* RFC 6455 7.4 and Autobahn 7.7/7.9: what a peer may send. 1012-1014 are
 * registered with IANA since (restart, try again later, bad gateway) and
 * browsers send them, so they are accepted. */
bool ws_close_code_valid(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

static void ws_close_frame(ws_parser *p, const ws_callbacks *cb, void *ud) {
  size_t n = (size_t)p->frame_len;
  int code = WS_CLOSE_NO_STATUS;
  const char *reason = "";
  if (n == 1) { ws_fail(p, WS_EPROTO, "close frame with a 1-byte payload"); return; }
  if (n >= 2) {
    code = (uint8_t)p->ctrl[0] << 8 | (uint8_t)p->ctrl[1];
    if (!ws_close_code_valid(code)) { ws_fail(p, WS_EPROTO, "invalid close code"); return; }
    reason = p->ctrl + 2;
    n -= 2;
    if (!utf8_valid(reason, n)) { ws_fail(p, WS_EUTF8, "invalid UTF-8 in close reason"); return; }
  }
  p->state = WS_PS_CLOSED;
  if (cb->on_close) ws_called(p, cb->on_close(ud, code, reason, n));
}

static void ws_frame_end(ws_parser *p, const ws_callbacks *cb, void *ud) {
  size_t n = (size_t)p->frame_len;
  p->state = WS_PS_HEADER;
  switch (p->opcode) {
  case WS_OP_PING:
    if (cb->on_ping) ws_called(p, cb->on_ping(ud, p->ctrl, n));
    break;
  case WS_OP_PONG:
    if (cb->on_pong) ws_called(p, cb->on_pong(ud, p->ctrl, n));
    break;
  case WS_OP_CLOSE: ws_close_frame(p, cb, ud); break;
  default:
    if (p->fin) ws_message_end(p, cb, ud);
    break;
  }
}

int ws_parser_feed(ws_parser *p, const char *data, size_t len, const ws_callbacks *cb,
                   void *ud) {
  static const ws_callbacks none;
  const uint8_t *in = (const uint8_t *)data;
  size_t off = 0;
  if (!cb) cb = &none;
  while (off < len) {
    if (p->state == WS_PS_HEADER)
      ws_header_bytes(p, in, len, &off, cb, ud);
    else if (p->state == WS_PS_PAYLOAD)
      ws_payload_bytes(p, in, len, &off, cb, ud);
    else
      break;
  }
  switch (p->state) {
  case WS_PS_FAILED: return p->err;
  case WS_PS_STOPPED: return WS_ESTOPPED;
  default: return 0;
  }
}

/* ---- Encoder ------------------------------------------------------------- */

size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], ws_opcode op, bool fin, uint64_t len,
                       const uint8_t mask[4]) {
  uint8_t m = mask ? 0x80 : 0;
  size_t i = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0F));
  if (len < 126) {
    out[1] = (uint8_t)(m | len);
  } else if (len <= 0xFFFF) {
    out[1] = m | 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    i = 4;
  } else {
    out[1] = m | 127;
    for (int k = 0; k < 8; k++) out[2 + k] = (uint8_t)(len >> (56 - 8 * k));
    i = 10;
  }
  if (mask) {
    memcpy(out + i, mask, 4);
    i += 4;
  }
  return i;
}

void ws_mask(void *dst, const void *src, size_t n, const uint8_t mask[4], uint64_t offset) {
  uint8_t *d = dst, k[8];
  const uint8_t *s = src;
  uint64_t k64, w;
  size_t i = 0;
  for (int j = 0; j < 8; j++) k[j] = mask[(offset + j) & 3];
  memcpy(&k64, k, 8);
  for (; n - i >= 8; i += 8) {
    memcpy(&w, s + i, 8);
    w ^= k64;
    memcpy(d + i, &w, 8);
  }
  /* i is a multiple of 8, so k[] is still in phase with the payload. */
  for (; i < n; i++) d[i] = s[i] ^ k[i & 7];
}

/* Masking keys only stop a peer's proxies from mistaking our frames for
 * HTTP (RFC 6455 10.3); tickerd's client never sends bytes chosen by a third
 * party, so the fast generator seeded once from the kernel is enough and
 * spares a syscall per frame. */
static uint64_t ws_rng_state;

static uint64_t ws_rng_next(void) {
  if (!ws_rng_state) ws_rng_state = rng_seed_random();
  return rng_next(&ws_rng_state);
}

/* The one frame builder: a final frame whose payload is the pieces one after
 * another (the hub wraps a shared payload in its envelope this way, without
 * a second copy), masked when a client sends it. */
static td_buf *ws_encode_pieces(ws_opcode op, const void *const *pieces, const size_t *lens, int n, bool masked) {
  uint8_t hdr[WS_MAX_HEADER], key[4];
  size_t len = 0;
  for (int i = 0; i < n; i++) len += lens[i];
  if (masked) {
    uint32_t r = (uint32_t)ws_rng_next();
    memcpy(key, &r, 4);
  }
  size_t h = ws_frame_header(hdr, op, true, len, masked ? key : NULL);
  if (len > UINT32_MAX - h) return NULL;
  td_buf *b = buf_new(h + len);
  if (!b) return NULL;
  memcpy(b->data, hdr, h);
  size_t at = h;
  for (int i = 0; i < n; i++) {
    if (!lens[i]) continue;
    if (masked) ws_mask(b->data + at, pieces[i], lens[i], key, at - h);
    else memcpy(b->data + at, pieces[i], lens[i]);
    at += lens[i];
  }
  b->len = (uint32_t)(h + len);
  return b;
}

static td_buf *ws_encode(ws_opcode op, const void *payload, size_t len, bool masked) {
  return ws_encode_pieces(op, &payload, &len, 1, masked);
}

td_buf *ws_frame_text_wrapped(const char *head, size_t head_len, const char *body, size_t body_len, const char *tail,
                              size_t tail_len) {
  const void *pieces[3] = {head, body, tail};
  size_t lens[3] = {head_len, body_len, tail_len};
  return ws_encode_pieces(WS_OP_TEXT, pieces, lens, 3, false);
}

td_buf *ws_frame_encode(ws_opcode op, const void *payload, size_t len) {
  return ws_encode(op, payload, len, false);
}

td_buf *ws_frame_encode_masked(ws_opcode op, const void *payload, size_t len) {
  return ws_encode(op, payload, len, true);
}

/* A code that may not go on the wire (0, 1005, 1006, ...) sends an empty
 * close frame rather than one the peer must reject. */
static td_buf *ws_encode_close(int code, const char *reason, bool masked) {
  char payload[WS_MAX_CONTROL_PAYLOAD];
  size_t n = 0;
  if (ws_close_code_valid(code)) {
    payload[0] = (char)(code >> 8);
    payload[1] = (char)code;
    n = reason ? strnlen(reason, WS_MAX_CLOSE_REASON + 1) : 0;
    if (n > WS_MAX_CLOSE_REASON) {
      n = WS_MAX_CLOSE_REASON;
      while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80) n--; /* not mid-character */
    }
    if (n) memcpy(payload + 2, reason, n);
    n += 2;
  }
  return ws_encode(WS_OP_CLOSE, payload, n, masked);
}

td_buf *ws_frame_encode_close(int code, const char *reason) {
  return ws_encode_close(code, reason, false);
}

td_buf *ws_frame_encode_close_masked(int code, const char *reason) {
  return ws_encode_close(code, reason, true);
}

/* ---- Handshake ----------------------------------------------------------- */

static int ws_b64_value(char c) { return base64_value((unsigned char)c, false); }

/* 16 bytes are 22 base64 digits and "==": the last digit carries 2 bits,
 * its 4 low bits must be zero in the canonical form. */
bool ws_key_valid(const char *key, size_t len) {
  if (len != WS_KEY_LEN || key[22] != '=' || key[23] != '=') return false;
  for (int i = 0; i < 22; i++)
    if (ws_b64_value(key[i]) < 0) return false;
  return (ws_b64_value(key[21]) & 0x0F) == 0;
}

int ws_accept_key(const char *sec_websocket_key, size_t len, char out[WS_ACCEPT_LEN + 1]) {
  char in[WS_KEY_LEN + WS_GUID_LEN];
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (!ws_key_valid(sec_websocket_key, len)) return -EINVAL;
  memcpy(in, sec_websocket_key, WS_KEY_LEN);
  memcpy(in + WS_KEY_LEN, ws_guid, WS_GUID_LEN);
  if (!EVP_Digest(in, sizeof(in), md, &md_len, EVP_sha1(), NULL) || md_len != 20) return -EIO;
  EVP_EncodeBlock((unsigned char *)out, md, 20); /* 28 digits and a NUL */
  return 0;
}

bool ws_accept_matches(const char *key, size_t key_len, const char *accept, size_t accept_len) {
  char want[WS_ACCEPT_LEN + 1];
  return accept_len == WS_ACCEPT_LEN && ws_accept_key(key, key_len, want) == 0 &&
         memcmp(want, accept, WS_ACCEPT_LEN) == 0;
}

void ws_client_key(char out[WS_KEY_LEN + 1]) {
  uint8_t raw[16];
  if (getrandom(raw, sizeof(raw), 0) != sizeof(raw)) {
    uint64_t a = ws_rng_next(), b = ws_rng_next();
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
  }
  EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw)); /* 24 digits and a NUL */
}
