/* permessage-deflate (RFC 7692) for the server side of /ws: the
 * negotiation, the compressed variant of a server frame, and the inflation
 * of a client's compressed message.
 *
 * Both directions run without context takeover, so that no connection
 * keeps a zlib stream: one deflate stream and one inflate stream serve the
 * whole process (one thread), reset before every message. A server frame is
 * compressed once and the compressed bytes are shared like the plain ones:
 *
 *   wsd_variant v = wsd_variant_of(ws_frame_encode(WS_OP_TEXT, json, len));
 *   for each client: conn_send(conn, wsd_pick(&v, client_deflate_bits), 0);
 *   wsd_variant_done(&v);
 *
 * The compressed variant is built on the first wsd_pick that wants it, so a
 * message nobody with deflate receives is never compressed. */
#ifndef TD_WS_DEFLATE_H
#define TD_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* RFC 7692 7.1.2: LZ77 window sizes a peer may name, as powers of two. */
#define WSD_MIN_WINDOW_BITS 8
#define WSD_MAX_WINDOW_BITS 15
/* Room for our Sec-WebSocket-Extensions response line, CRLF included. */
#define WSD_RESPONSE_MAX 160

/* What a handshake agreed: window_bits 0 means no deflate; else the server
 * window the client allows (server_max_window_bits, 15 when not named) and
 * the header line to answer with. */
typedef struct {
  uint8_t window_bits;
  char response[WSD_RESPONSE_MAX];
} wsd_agreement;

/* Reads one Sec-WebSocket-Extensions value (RFC 6455 9.1). Returns 1 when a
 * permessage-deflate offer was accepted (the first acceptable one, in the
 * client's order of preference), 0 when there was none or each was declined
 * (RFC 7692 7.1: unknown, repeated or invalid parameters), -EINVAL when the
 * value does not follow the grammar. */
int wsd_negotiate(const char *value, size_t len, wsd_agreement *out);

/* A server frame and its compressed variant; see the example above. */
typedef struct {
  td_buf *plain;    /* a final, unmasked frame; the variant holds its reference */
  td_buf *z;        /* the compressed frame (RSV1 set), NULL until built or when not worth it */
  bool tried;
} wsd_variant;

/* Takes over the caller's reference to `plain` (which may be NULL). */
wsd_variant wsd_variant_of(td_buf *plain);
/* The bytes for a client whose server window is `window_bits` (0: no
 * deflate): the compressed frame when there is one that the client's
 * window can read, else the plain one. NULL only when plain is NULL. */
td_buf *wsd_pick(wsd_variant *v, uint8_t window_bits);
void wsd_variant_done(wsd_variant *v);

/* Inflates a compressed message (its frames' payloads, reassembled) into a
 * process-wide buffer: *out is valid until the next call. Returns 0,
 * -EMSGSIZE as soon as more than `limit` bytes come out (a decompression
 * bomb stops there), -EBADMSG for bytes that are not DEFLATE, -ENOMEM. */
int wsd_inflate(const void *in, size_t len, size_t limit, const char **out, size_t *out_len);

/* Releases the process-wide zlib streams and buffers (at exit, for leak
 * checkers); they are made again on next use. */
void wsd_release(void);

typedef struct {
  uint64_t offers_accepted, offers_declined, offers_malformed;
  uint64_t frames_compressed;  /* compressed variants built (once per message, shared) */
  uint64_t frames_not_smaller; /* messages sent plain: compressing did not make them smaller */
  uint64_t sent_compressed;    /* compressed frames queued to clients */
  uint64_t bytes_saved;        /* plain minus compressed bytes, over those */
  uint64_t messages_inflated;
  uint64_t inflate_too_big;    /* refused: inflated beyond the limit (close 1009) */
  uint64_t inflate_bad_data;   /* refused: not DEFLATE (close 1007) */
} wsd_stats;

extern wsd_stats wsd_counters;

#endif
