/* permessage-deflate (RFC 7692): see ws_deflate.h and README "Compression". */
#include "http/ws_deflate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "http/ws_frame.h"

/* Messages shorter than this go out plain: DEFLATE's block header and the
 * lost 4-byte tail eat what so little text could save. */
#define WSD_MIN_BYTES 64
/* zlib's default level: a live quote costs about the same at level 1 (the
 * fixed cost of a block dominates 300 bytes), and is compressed once per
 * message, not per client (bench/deflate_cost.c, README "Compression"). */
#define WSD_LEVEL 6
/* The hash table is cleared on every reset, which is per message: 2^(4+7)
 * entries (4 KiB) instead of zlib's default 64 KiB make that clearing and
 * a quote a little cheaper; a 17 KB history message compresses as well but
 * takes longer (more collisions), and it is the rarer one. */
#define WSD_MEM_LEVEL 4
/* The inflate buffer starts here and doubles up to the caller's limit; a
 * larger one is freed at the next call, so that one big message does not
 * hold memory for the life of the process. */
#define WSD_INFLATE_MIN_CAP 4096
#define WSD_INFLATE_KEEP_BYTES (256 * 1024)
/* RFC 7692 7.2.1: a message's compressed bytes end in an empty stored
 * block, 00 00 ff ff, which the sender removes and the receiver puts back. */
static const uint8_t wsd_tail[4] = {0x00, 0x00, 0xff, 0xff};

wsd_stats wsd_counters;

/* ---- negotiation (RFC 6455 9.1, RFC 7692 7) -------------------------------- */

typedef struct {
  const char *p, *end;
} wsd_cursor;

/* RFC 7230 3.2.6 */
static bool wsd_tchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void wsd_ows(wsd_cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) c->p++;
}

static bool wsd_token(wsd_cursor *c, const char **tok, size_t *n) {
  *tok = c->p;
  while (c->p < c->end && wsd_tchar(*c->p)) c->p++;
  *n = (size_t)(c->p - *tok);
  return *n > 0;
}

/* A parameter value, token or quoted-string, unescaped into out. RFC 7692
 * 7.1: after unescaping, a value must still be a token; one that is not, or
 * is longer than any value we know, comes out empty and fails validation.
 * Returns false only when the header's grammar is broken. */
static bool wsd_value(wsd_cursor *c, char *out, size_t out_size) {
  size_t n = 0;
  bool token_chars = true;
  if (c->p < c->end && *c->p == '"') {
    for (c->p++; c->p < c->end && *c->p != '"'; c->p++) {
      if (*c->p == '\\' && ++c->p == c->end) return false;
      if ((unsigned char)*c->p < 0x20 && *c->p != '\t') return false;
      token_chars &= wsd_tchar(*c->p);
      if (n + 1 < out_size) out[n] = *c->p;
      n++;
    }
    if (c->p == c->end) return false;
    c->p++;
  } else {
    const char *tok;
    if (!wsd_token(c, &tok, &n)) return false;
    memcpy(out, tok, n < out_size ? n : out_size - 1);
  }
  if (!token_chars || n >= out_size) n = 0;
  out[n] = '\0';
  return true;
}

/* "8" to "15", without leading zeros. */
static int wsd_window_bits(const char *v) {
  if (!v) return -1;
  if (v[0] >= '8' && v[0] <= '9' && !v[1]) return v[0] - '0';
  if (v[0] == '1' && v[1] >= '0' && v[1] <= '5' && !v[2]) return 10 + v[1] - '0';
  return -1;
}

/* One permessage-deflate offer being read. */
typedef struct {
  unsigned seen;        /* bit per known parameter: a second one declines */
  bool declined;
  int server_bits;      /* 0: not named */
} wsd_offer;

enum { WSD_P_SNCT = 1, WSD_P_CNCT = 2, WSD_P_SMWB = 4, WSD_P_CMWB = 8 };

/* RFC 7692 7.1: an offer with an unknown, repeated or invalid parameter is
 * declined (not the handshake). value NULL: the parameter had none. */
static void wsd_offer_param(wsd_offer *o, const char *name, size_t n, const char *value) {
  static const struct {
    const char *name;
    unsigned bit;
  } params[] = {{"server_no_context_takeover", WSD_P_SNCT},
                {"client_no_context_takeover", WSD_P_CNCT},
                {"server_max_window_bits", WSD_P_SMWB},
                {"client_max_window_bits", WSD_P_CMWB}};
  unsigned bit = 0;
  for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++)
    if (strlen(params[i].name) == n && !strncasecmp(params[i].name, name, n)) bit = params[i].bit;
  if (!bit || (o->seen & bit)) {
    o->declined = true;
    return;
  }
  o->seen |= bit;
  switch (bit) {
  case WSD_P_SNCT:
  case WSD_P_CNCT: o->declined |= value != NULL; break;
  case WSD_P_SMWB:
    o->server_bits = wsd_window_bits(value);
    o->declined |= o->server_bits < 0;
    break;
  default: /* client_max_window_bits: a hint; our inflater reads any window */
    o->declined |= value && wsd_window_bits(value) < 0;
    break;
  }
}

static void wsd_accept(const wsd_offer *o, wsd_agreement *out) {
  out->window_bits = (uint8_t)(o->server_bits ? o->server_bits : WSD_MAX_WINDOW_BITS);
  int n = snprintf(out->response, sizeof(out->response),
                   "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                   "client_no_context_takeover");
  if (o->server_bits)
    n += snprintf(out->response + n, sizeof(out->response) - (size_t)n, "; server_max_window_bits=%d",
                  o->server_bits);
  snprintf(out->response + n, sizeof(out->response) - (size_t)n, "\r\n");
}

/* One extension with its parameters; `offer` is filled when it is
 * permessage-deflate. */
static bool wsd_extension(wsd_cursor *c, bool *is_deflate, wsd_offer *offer) {
  const char *name;
  size_t n;
  if (!wsd_token(c, &name, &n)) return false;
  *is_deflate = n == strlen("permessage-deflate") && !strncasecmp(name, "permessage-deflate", n);
  memset(offer, 0, sizeof(*offer));
  for (;;) {
    wsd_ows(c);
    if (c->p == c->end || *c->p != ';') return true;
    c->p++;
    wsd_ows(c);
    const char *param;
    size_t pn;
    char value[8];
    bool has_value = false;
    if (!wsd_token(c, &param, &pn)) return false;
    wsd_ows(c);
    if (c->p < c->end && *c->p == '=') {
      c->p++;
      wsd_ows(c);
      if (!wsd_value(c, value, sizeof(value))) return false;
      has_value = true;
    }
    wsd_offer_param(offer, param, pn, has_value ? value : NULL);
  }
}

int wsd_negotiate(const char *value, size_t len, wsd_agreement *out) {
  wsd_cursor c = {value, value + len};
  int accepted = 0;
  for (;;) {
    wsd_ows(&c);
    if (c.p == c.end) return accepted;
    if (*c.p == ',') { /* RFC 7230 7: empty list elements are allowed */
      c.p++;
      continue;
    }
    bool is_deflate;
    wsd_offer offer;
    if (!wsd_extension(&c, &is_deflate, &offer)) return -EINVAL;
    if (c.p != c.end && *c.p != ',') return -EINVAL;
    if (is_deflate && !offer.declined && !accepted) {
      wsd_accept(&offer, out);
      accepted = 1;
    }
  }
}

/* ---- compression ------------------------------------------------------------- */

static z_stream wsd_zs;
static bool wsd_zs_ready;

/* The payload of a plain frame built by ws_frame_encode: final, unmasked. */
static size_t wsd_payload_offset(const td_buf *b) {
  uint8_t len7 = (uint8_t)b->data[1] & 0x7F;
  return len7 == 127 ? 10 : len7 == 126 ? 4 : 2;
}

/* Compresses the payload of `plain` into a new frame with RSV1 set, or NULL
 * when the result would not be smaller. The output buffer is as large as the
 * plain frame, so a message that does not shrink stops deflate early. */
static td_buf *wsd_deflate_frame(const td_buf *plain) {
  size_t off = wsd_payload_offset(plain), len = plain->len - off;
  if (len < WSD_MIN_BYTES) return NULL;
  if (!wsd_zs_ready) {
    if (deflateInit2(&wsd_zs, WSD_LEVEL, Z_DEFLATED, -WSD_MAX_WINDOW_BITS, WSD_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK)
      return NULL;
    wsd_zs_ready = true;
  } else {
    deflateReset(&wsd_zs);
  }
  td_buf *z = buf_new(plain->len);
  if (!z) return NULL;
  /* Compressed bytes go after room for the largest header, then move down
   * to sit right behind the real one. */
  wsd_zs.next_in = (Bytef *)(plain->data + off);
  wsd_zs.avail_in = (uInt)len;
  wsd_zs.next_out = (Bytef *)(z->data + WS_MAX_HEADER);
  wsd_zs.avail_out = (uInt)(plain->len > WS_MAX_HEADER ? plain->len - WS_MAX_HEADER : 0);
  int rc = deflate(&wsd_zs, Z_SYNC_FLUSH);
  size_t zlen = (size_t)((char *)wsd_zs.next_out - (z->data + WS_MAX_HEADER));
  if (rc != Z_OK || wsd_zs.avail_in != 0 || wsd_zs.avail_out == 0 || zlen < sizeof(wsd_tail) ||
      memcmp(z->data + WS_MAX_HEADER + zlen - sizeof(wsd_tail), wsd_tail, sizeof(wsd_tail))) {
    buf_unref(z);
    return NULL;
  }
  zlen -= sizeof(wsd_tail);
  uint8_t hdr[WS_MAX_HEADER];
  size_t h = ws_frame_header(hdr, (ws_opcode)(plain->data[0] & 0x0F), true, zlen, NULL);
  if (h + zlen >= plain->len) {
    buf_unref(z);
    return NULL;
  }
  hdr[0] |= 0x40; /* RSV1: "this message is compressed" (RFC 7692 6) */
  memmove(z->data + h, z->data + WS_MAX_HEADER, zlen);
  memcpy(z->data, hdr, h);
  z->len = (uint32_t)(h + zlen);
  return z;
}

wsd_variant wsd_variant_of(td_buf *plain) {
  wsd_variant v = {plain, NULL, false};
  return v;
}

/* Without context takeover every distance points inside the message, so
 * bytes compressed with the full window suit a smaller one whenever the
 * message is no longer than that window. */
static bool wsd_fits(const wsd_variant *v, uint8_t window_bits) {
  return window_bits >= WSD_MAX_WINDOW_BITS ||
         v->plain->len - wsd_payload_offset(v->plain) <= ((size_t)1 << window_bits);
}

td_buf *wsd_pick(wsd_variant *v, uint8_t window_bits) {
  if (!window_bits || !v->plain) return v->plain;
  if (!v->tried) {
    v->tried = true;
    v->z = wsd_deflate_frame(v->plain);
    if (v->z) wsd_counters.frames_compressed++;
    else wsd_counters.frames_not_smaller++;
  }
  if (!v->z || !wsd_fits(v, window_bits)) return v->plain;
  wsd_counters.sent_compressed++;
  wsd_counters.bytes_saved += v->plain->len - v->z->len;
  return v->z;
}

void wsd_variant_done(wsd_variant *v) {
  if (v->plain) buf_unref(v->plain);
  if (v->z) buf_unref(v->z);
  v->plain = v->z = NULL;
}

/* ---- inflation --------------------------------------------------------------- */

static z_stream wsd_zi;
static bool wsd_zi_ready;
static char *wsd_out;
static size_t wsd_out_cap;

/* Grows the output buffer (at most to limit + 1, the byte that proves a
 * message too big) and points the stream at its free part. */
static int wsd_out_grow(size_t used, size_t limit) {
  size_t cap = wsd_out_cap ? wsd_out_cap * 2 : WSD_INFLATE_MIN_CAP;
  if (cap > limit + 1) cap = limit + 1;
  if (cap <= used) return -EMSGSIZE;
  char *m = realloc(wsd_out, cap);
  if (!m) return -ENOMEM;
  wsd_out = m;
  wsd_out_cap = cap;
  wsd_zi.next_out = (Bytef *)(wsd_out + used);
  wsd_zi.avail_out = (uInt)(cap - used);
  return 0;
}

/* Runs inflate over `in` until it is consumed, the stream ends, or more
 * than `limit` bytes came out. */
static int wsd_inflate_some(const void *in, size_t len, size_t limit, bool *ended) {
  wsd_zi.next_in = (Bytef *)in;
  wsd_zi.avail_in = (uInt)len;
  while (wsd_zi.avail_in > 0 && !*ended) {
    if (wsd_zi.avail_out == 0) {
      int g = wsd_out_grow(wsd_zi.total_out, limit);
      if (g) return g;
    }
    int rc = inflate(&wsd_zi, Z_SYNC_FLUSH);
    if (rc == Z_STREAM_END) *ended = true;
    else if (rc == Z_MEM_ERROR) return -ENOMEM;
    else if (rc != Z_OK && rc != Z_BUF_ERROR) return -EBADMSG;
    if (wsd_zi.total_out > limit) return -EMSGSIZE;
  }
  return 0;
}

int wsd_inflate(const void *in, size_t len, size_t limit, const char **out, size_t *out_len) {
  if (wsd_out_cap > WSD_INFLATE_KEEP_BYTES) {
    free(wsd_out);
    wsd_out = NULL;
    wsd_out_cap = 0;
  }
  if (!wsd_zi_ready) {
    if (inflateInit2(&wsd_zi, -WSD_MAX_WINDOW_BITS) != Z_OK) return -ENOMEM;
    wsd_zi_ready = true;
  } else {
    inflateReset(&wsd_zi);
  }
  wsd_zi.next_out = (Bytef *)wsd_out;
  wsd_zi.avail_out = (uInt)(wsd_out_cap < limit + 1 ? wsd_out_cap : limit + 1);
  bool ended = false;
  /* zlib takes uInt lengths; compressed messages are bounded by the frame
   * parser's maximum, far below 4 GiB. */
  int rc = wsd_inflate_some(in, len, limit, &ended);
  if (!rc && !ended) rc = wsd_inflate_some(wsd_tail, sizeof(wsd_tail), limit, &ended);
  if (rc == -EMSGSIZE) wsd_counters.inflate_too_big++;
  else if (rc == -EBADMSG) wsd_counters.inflate_bad_data++;
  if (rc) return rc;
  wsd_counters.messages_inflated++;
  *out = wsd_out ? wsd_out : "";
  *out_len = wsd_zi.total_out;
  return 0;
}

void wsd_release(void) {
  if (wsd_zs_ready) deflateEnd(&wsd_zs);
  if (wsd_zi_ready) inflateEnd(&wsd_zi);
  wsd_zs_ready = wsd_zi_ready = false;
  free(wsd_out);
  wsd_out = NULL;
  wsd_out_cap = 0;
}
