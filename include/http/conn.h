/* A connection's byte queue: what WebSocket and SSE sessions (and the
 * HTTP/1 module under them) send through. Every message is a reference to
 * a shared td_buf; the queue writes now what the socket takes and keeps the
 * rest, gathers up to CONN_MAX_IOV buffers per system call, drops queued
 * messages superseded by newer ones with the same opaque tag, and counts
 * the bytes waiting (the owner's backpressure limits read it).
 *
 * A connection has one owner at a time. The HTTP/1 module (http1.c) reads
 * requests from it until a handler takes it over (conn_take_over, or
 * http_respond_stream); from then on its bytes, its drain and its end go to
 * the new owner's td_stream_ops. */
#ifndef TD_HTTP_CONN_H
#define TD_HTTP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

typedef struct td_conn td_conn;

/* Bytes from the peer after a connection has been taken over (WebSocket,
 * SSE), and its end. `on_close` is called once, when the connection starts
 * closing; the owner must drop its pointer to the connection then. */
typedef struct {
  void (*on_data)(void *owner, const char *data, size_t len);
  void (*on_drain)(void *owner);       /* the queue became empty after conn_notify_drain */
  void (*on_close)(void *owner, const char *reason);
} td_stream_ops;

/* Takes the connection over after the current request (101 upgrade already
 * written by the caller with conn_send). Bytes already read past the request
 * are handed to ops->on_data right away. */
void conn_take_over(td_conn *c, const td_stream_ops *ops, void *owner);
/* Queues a reference to `b` (the caller keeps its own). `tag` != 0 marks a
 * message that conn_conflate() may replace by a newer one with the same tag. */
int conn_send(td_conn *c, td_buf *b, uint32_t tag);
int conn_send_copy(td_conn *c, const void *p, size_t n);
size_t conn_queued_bytes(const td_conn *c);
/* Calls the owner's on_drain once, the next time the outgoing queue becomes
 * empty (the hub asks when a client goes over its soft limit; it costs
 * nothing per message otherwise). */
void conn_notify_drain(td_conn *c);
/* Drops queued (not yet written) messages that a later one with the same tag
 * supersedes; tags are 1..max_tag, opaque here. Returns how many were dropped. */
size_t conn_conflate(td_conn *c, uint32_t max_tag);
/* Overload: the next flush of streaming connections (once per loop
 * iteration) conflates each one it writes, as conn_conflate(c, max_tag),
 * before writing. Asked by the stream layer while its source is behind;
 * the drops are counted in http_stats.stream_overload_conflated. */
void conn_conflate_next_flush(uint32_t max_tag);
void conn_close(td_conn *c, const char *reason);
/* Closes once everything queued has been written. */
void conn_end(td_conn *c);
bool conn_is_closing(const td_conn *c);
const char *conn_peer_ip(const td_conn *c);
uint64_t conn_id(const td_conn *c);

#endif
