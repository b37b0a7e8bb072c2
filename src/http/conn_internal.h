/* The connection byte queue's side for the HTTP layer (http1.c, server.c
 * and the queue's unit test): the struct, so that http1.c can embed it, and
 * the hooks through which the connection's first user hears from it. Not
 * for other layers: they see td_conn only through http/conn.h. */
#ifndef TD_CONN_INTERNAL_H
#define TD_CONN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/conn.h"

/* Writes leave in batches of at most this many buffers (one writev). */
#define CONN_MAX_IOV 64
/* A cache line: the fields one delivery touches share one (see td_conn). */
#define CONN_CACHE_LINE 64
/* First size of a connection's queue ring; it doubles as needed. */
#define CONN_QUEUE_INITIAL 8
/* First size of the list of connections to flush; it doubles as needed. */
#define CONN_FLUSH_LIST_INITIAL 1024

/* CONN_OPEN       the creator's (HTTP/1): writes go out at once
 * CONN_STREAMING  taken over by an owner: writes go out once per loop iteration
 * CONN_CLOSING    uv_close issued; the creator frees it after on_closed */
typedef enum { CONN_OPEN, CONN_STREAMING, CONN_CLOSING } conn_state;

typedef struct {
  td_buf *buf;
  uint32_t off;   /* bytes of buf already written */
  uint32_t tag;   /* 0, or the owner's opaque conflation tag */
} conn_entry;

/* What the connection's creator (http1.c) hears from it while it is
 * CONN_OPEN, and at its end whatever the state. */
typedef struct {
  void (*on_data)(td_conn *c, const char *data, size_t len);
  void (*on_read_end)(td_conn *c, int status);   /* UV_EOF or a read error */
  void (*on_drain)(td_conn *c);                  /* the queue emptied after conn_notify_drain */
  void (*on_take_over)(td_conn *c);              /* conn_take_over: the creator lets go */
  void (*on_close)(td_conn *c, const char *reason);   /* after the owner's on_close */
  void (*on_closed)(td_conn *c);                 /* the socket's handle is closed */
} conn_hooks;

struct td_conn {
  /* The outgoing queue: everything that queueing one message and writing it
   * touches, in the first cache line. With 10,000 streaming clients every
   * delivery goes to a connection that is no longer in any cache; this
   * line, the queue entry and the kernel's socket are all it reads. */
  _Alignas(CONN_CACHE_LINE) conn_state state;
  int fd;                      /* the socket, written directly (conn_write) */
  uint32_t out_head, out_count, out_cap;   /* ring; out_cap is a power of two */
  uint32_t inflight;           /* entries in the uv_write in flight */
  uint32_t flush_index;        /* position + 1 in the flush list; 0: not listed */
  bool end_after_flush;        /* conn_end: close once the queue is written */
  bool drain_notify;           /* conn_notify_drain: call on_drain when the queue empties */
  bool reading;
  size_t queued_bytes;
  conn_entry *out;
  uint64_t last_write_progress;
  const td_stream_ops *ops;    /* the owner, once taken over */
  void *owner;

  const conn_hooks *hooks;
  uv_tcp_t tcp;
  uv_write_t write_req;
  uint64_t id;
  char peer_ip[48];
};

/* Sets up `c` (zeroed memory the caller owns) on `loop`; the handle is
 * open, not yet connected: uv_accept or uv_tcp_open it, then conn_ready. */
void conn_setup(td_conn *c, uv_loop_t *loop, const conn_hooks *hooks);
/* The handle holds a connected socket: 0, or -1 (then conn_discard it). */
int conn_ready(td_conn *c);
/* Closes a connection that never became ready; on_closed follows. */
void conn_discard(td_conn *c);
/* Drops what is still queued; for the creator, after on_closed. */
void conn_release(td_conn *c);

void conn_read_start(td_conn *c);
void conn_read_stop(td_conn *c);
/* Bytes the creator read past the request that handed the connection over:
 * they belong to the new owner. */
void conn_feed_owner(td_conn *c, const char *data, size_t len);
/* When the write deadline counts from: the last write that made progress,
 * or when something first waited to be written (uv_now ms). */
uint64_t conn_write_progress_at(const td_conn *c);
/* Closes the per-iteration flush of streaming connections (at shutdown). */
void conn_stop_flushing(void);

#endif
