/* WebSocket (RFC 6455) frame codec, shared by both ends of tickerd:
 * the server side (/ws clients, WS_ROLE_SERVER) and the client side (the
 * upstream connection to Alpaca, WS_ROLE_CLIENT).
 *
 *   ws_parser p;
 *   ws_parser_init(&p, WS_ROLE_SERVER, cfg->ws_max_message);
 *   ...on every read:
 *   int r = ws_parser_feed(&p, buf, n, &callbacks, conn);
 *   if (r < 0 && r != WS_ESTOPPED) send ws_frame_encode_close(ws_parser_close_code(&p), ws_parser_error(&p));
 *   ...on close:
 *   ws_parser_free(&p);
 *
 * The parser is incremental (any byte split works, down to one byte per
 * call), allocates nothing but the reassembly buffer of fragmented or
 * partially received messages (bounded by the maximum message size), and
 * hands complete, unmasked, unfragmented frames to the callback straight
 * from the caller's buffer.
 *
 * Encoding: server frames are unmasked and encoded once into a shared td_buf
 * (buf.h) that every subscriber's queue references; client frames are masked
 * with a fresh key per frame. */
#ifndef TD_WS_FRAME_H
#define TD_WS_FRAME_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/utf8.h"

/* 2 bytes of fixed header + 8 of extended length + 4 of masking key. */
#define WS_MAX_HEADER 14
/* RFC 6455 5.5: control frames carry at most 125 bytes. */
#define WS_MAX_CONTROL_PAYLOAD 125
/* A close reason fits in a control frame after the 2-byte code. */
#define WS_MAX_CLOSE_REASON (WS_MAX_CONTROL_PAYLOAD - 2)
/* base64 of a 20-byte SHA-1: 28 characters. */
#define WS_ACCEPT_LEN 28
/* base64 of the 16 random bytes of Sec-WebSocket-Key: 24 characters. */
#define WS_KEY_LEN 24
/* A reassembly buffer larger than this is released after each message, so
 * that thousands of idle clients do not each keep their largest message. */
#define WS_PARSER_KEEP_BYTES 4096

typedef enum {
  WS_OP_CONTINUATION = 0x0,
  WS_OP_TEXT = 0x1,
  WS_OP_BINARY = 0x2,
  WS_OP_CLOSE = 0x8,
  WS_OP_PING = 0x9,
  WS_OP_PONG = 0xA
} ws_opcode;

typedef enum {
  WS_ROLE_SERVER, /* the peer is a client: its frames must be masked */
  WS_ROLE_CLIENT  /* the peer is a server: its frames must not be masked */
} ws_role;

/* Close status codes (RFC 6455 7.4.1). */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_GOING_AWAY 1001
#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_UNSUPPORTED 1003
#define WS_CLOSE_NO_STATUS 1005 /* never on the wire: "the close frame had no code" */
#define WS_CLOSE_ABNORMAL 1006  /* never on the wire: "the connection dropped" */
#define WS_CLOSE_INVALID_DATA 1007
#define WS_CLOSE_POLICY 1008
#define WS_CLOSE_TOO_BIG 1009
#define WS_CLOSE_MANDATORY_EXT 1010
#define WS_CLOSE_INTERNAL_ERROR 1011

/* ws_parser_feed results (negative errno values, libuv style). */
#define WS_EPROTO (-EPROTO)       /* protocol violation: close 1002 */
#define WS_EUTF8 (-EILSEQ)        /* invalid UTF-8 in text or close reason: 1007 */
#define WS_ETOOBIG (-EMSGSIZE)    /* message above the parser's maximum: 1009 */
#define WS_ENOMEM (-ENOMEM)       /* reassembly buffer allocation failed: 1011 */
#define WS_ESTOPPED (-ECANCELED)  /* a callback returned non-zero */
#define WS_EDEFLATE (-EBADMSG)    /* a compressed message is not DEFLATE: 1007 */

/* Every callback may be NULL (the event is then dropped). `data` is valid only
 * during the call. A non-zero return stops parsing: ws_parser_feed returns
 * WS_ESTOPPED now and on every later call. A callback must not free the
 * parser: return non-zero and free it after ws_parser_feed returns. */
typedef struct {
  /* A complete text (valid UTF-8) or binary message, fragments reassembled. */
  int (*on_message)(void *ud, ws_opcode op, const char *data, size_t len);
  int (*on_ping)(void *ud, const char *data, size_t len);
  int (*on_pong)(void *ud, const char *data, size_t len);
  /* code is WS_CLOSE_NO_STATUS when the close frame was empty; the reason is
   * valid UTF-8. After a close frame the parser ignores every further byte. */
  int (*on_close)(void *ud, int code, const char *reason, size_t len);
} ws_callbacks;

typedef enum {
  WS_PS_HEADER,  /* collecting the 2..14 header bytes of a frame */
  WS_PS_PAYLOAD, /* consuming the payload of the current frame */
  WS_PS_CLOSED,  /* a close frame was received: further bytes are ignored */
  WS_PS_FAILED,  /* protocol error: see close_code and error */
  WS_PS_STOPPED  /* a callback asked to stop */
} ws_parse_state;

/* A plain struct the caller embeds; its fields are private. */
typedef struct ws_parser {
  ws_parse_state state;
  ws_role role;
  size_t max_message;
  /* the frame being parsed */
  uint8_t hdr[WS_MAX_HEADER];
  uint8_t hdr_have;
  uint8_t hdr_need;
  uint8_t opcode;
  bool fin;
  bool rsv1;            /* permessage-deflate: the message this frame starts is compressed */
  bool masked;
  uint8_t mask[4];
  uint64_t frame_len;
  uint64_t frame_done;
  /* the payload of a control frame (at most 125 bytes) */
  char ctrl[WS_MAX_CONTROL_PAYLOAD];
  /* the data message being reassembled */
  bool in_message;      /* a data frame without FIN was received */
  uint8_t msg_opcode;   /* WS_OP_TEXT or WS_OP_BINARY */
  bool msg_compressed;  /* RSV1 on its first frame: inflated when complete */
  bool deflate;         /* permessage-deflate was negotiated: RSV1 is allowed */
  char *msg;
  size_t msg_len;
  size_t msg_cap;
  utf8_state utf8;      /* validation state across the fragments of a text message */
  /* the failure, once state is WS_PS_FAILED */
  int err;
  int close_code;
  const char *error;
} ws_parser;

/* max_message: the largest reassembled data message accepted, in bytes
 * (0: TD_DEFAULT_WS_MAX_MESSAGE). */
void ws_parser_init(ws_parser *p, ws_role role, size_t max_message);
/* permessage-deflate was negotiated (ws_deflate.h): a data message whose
 * first frame has RSV1 set is inflated, up to max_message bytes (1009
 * beyond), before on_message sees it. */
void ws_parser_allow_deflate(ws_parser *p);
/* Releases the reassembly buffer. The parser may be initialised again. */
void ws_parser_free(ws_parser *p);
/* Parses `len` bytes. Returns 0, or a negative WS_E* value. After an error
 * every later call returns the same error without parsing. */
int ws_parser_feed(ws_parser *p, const char *data, size_t len, const ws_callbacks *cb,
                   void *ud);
/* The close code to send after a failure (1002, 1007, 1009, 1011), else 0. */
int ws_parser_close_code(const ws_parser *p);
/* A static string saying why parsing failed, else NULL. Safe to send as the
 * close reason (ASCII, shorter than WS_MAX_CLOSE_REASON). */
const char *ws_parser_error(const ws_parser *p);

/* Writes a frame header for a payload of `len` bytes into `out` and returns
 * its size (2..14). mask NULL: unmasked (server to client). */
size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], ws_opcode op, bool fin, uint64_t len,
                       const uint8_t mask[4]);
/* XORs n bytes of src with the masking key into dst (dst may equal src), as
 * if the bytes started at `offset` within the payload. 8 bytes per step. */
void ws_mask(void *dst, const void *src, size_t n, const uint8_t mask[4], uint64_t offset);

/* One complete frame (FIN set) in a new td_buf with one reference; NULL on
 * OOM or when the frame would exceed a td_buf (4 GiB). */
td_buf *ws_frame_encode(ws_opcode op, const void *payload, size_t len);        /* unmasked: server */
/* A server text frame whose payload is head + body + tail, in one buffer. */
td_buf *ws_frame_text_wrapped(const char *head, size_t head_len, const char *body, size_t body_len, const char *tail,
                              size_t tail_len);
td_buf *ws_frame_encode_masked(ws_opcode op, const void *payload, size_t len); /* masked: client */
/* A close frame. code 0: no payload. reason NULL or NUL-terminated; cut to
 * WS_MAX_CLOSE_REASON bytes on a UTF-8 character boundary. */
td_buf *ws_frame_encode_close(int code, const char *reason);        /* server */
td_buf *ws_frame_encode_close_masked(int code, const char *reason); /* client */
/* Whether a close code may appear on the wire (see docs/ws_frame.md). */
bool ws_close_code_valid(int code);

/* Handshake. A valid Sec-WebSocket-Key is canonical base64 of 16 bytes. */
bool ws_key_valid(const char *key, size_t len);
/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)), NUL-terminated.
 * Returns 0, or -EINVAL when the key is not valid. */
int ws_accept_key(const char *sec_websocket_key, size_t len, char out[WS_ACCEPT_LEN + 1]);
/* Client side: whether the server's Sec-WebSocket-Accept matches our key. */
bool ws_accept_matches(const char *key, size_t key_len, const char *accept, size_t accept_len);
/* Client side: a fresh random Sec-WebSocket-Key, NUL-terminated. */
void ws_client_key(char out[WS_KEY_LEN + 1]);

#endif
