/* hiredis <-> libuv glue. hiredis calls the ev hooks to say which events it
 * wants; we keep the wanted mask and (re)start one uv_poll_t accordingly. */
#include "redis_uv.h"

#include <errno.h>
#include <hiredis/sds.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Reads of up to 16 KB (hiredis's) one readable event may make while bytes
 * are waiting: 256 KB, about a thousand quote messages as Redis sends them,
 * so that the loop goes back to its other work within tens of milliseconds
 * even when delivering them to thousands of clients. */
#define REDISUV_MAX_READS_PER_POLL 16

typedef struct redisuv_events {
  uv_poll_t poll;
  uv_check_t soon;       /* writes commands queued by this loop turn's callbacks */
  redisAsyncContext *ac; /* NULL once hiredis has called cleanup */
  int events;            /* UV_READABLE | UV_WRITABLE wanted by hiredis */
  int open_handles;      /* freed when both handles are closed */
  struct redisuv_events *soon_next; /* in the soon list, oldest first */
  bool soon_listed;
  bool behind;           /* the last read event left bytes unread */
  uint64_t behind_since; /* loop time of the first read event of that streak */
} redisuv_events;

/* Connections with commands queued during this turn, in the order they were
 * queued (tickerd runs one loop on one thread, as conn.c's flush list
 * assumes too). The first check callback of the turn writes them all in
 * that order: libuv runs check handles newest first, and a SUBSCRIBE queued
 * before a history read on another connection must reach Redis first, as
 * it did when both waited for the poll (the hub resumes a client from the
 * read and expects the live messages after it on the subscription). */
static redisuv_events *soon_first, *soon_last;

static void soon_unlink(redisuv_events *p) {
  if (!p->soon_listed) return;
  redisuv_events **pp = &soon_first, *prev = NULL;
  while (*pp != p) {
    prev = *pp;
    pp = &(*pp)->soon_next;
  }
  *pp = p->soon_next;
  if (soon_last == p) soon_last = prev;
  p->soon_next = NULL;
  p->soon_listed = false;
  uv_check_stop(&p->soon);
}

static void redisuv_on_poll(uv_poll_t *handle, int status, int events);

/* hiredis 0.14 frees the output buffer after every write that empties it
 * and allocates a new one for the next command. Under a pipelined load that
 * is a buffer of hundreds of KiB per connection and loop iteration: malloc
 * gave the top of the heap back to the kernel and faulted it in again each
 * time (strace: ~150 brk calls a second, ~15,000 page faults a second, and a
 * tickerd up to half again as slow per quote). For a connected context
 * without error the write is therefore done here, as redisBufferWrite and
 * redisAsyncHandleWrite do it, but an emptied buffer up to
 * REDISUV_OBUF_KEEP keeps its allocation. Anything else (connecting, an
 * error, another hiredis version) is left to redisAsyncHandleWrite, which
 * also reports a failed write as hiredis always did. */
#if HIREDIS_MAJOR == 0 && HIREDIS_MINOR == 14
#define REDISUV_OWN_WRITE 1
#else
#define REDISUV_OWN_WRITE 0
#endif

static void redisuv_write(redisAsyncContext *ac) {
  redisContext *c = &ac->c;
  if (!REDISUV_OWN_WRITE || !(c->flags & REDIS_CONNECTED) || c->err) {
    redisAsyncHandleWrite(ac);
    return;
  }
  size_t len = sdslen(c->obuf);
  if (len > 0) {
    ssize_t n = write(c->fd, c->obuf, len);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      redisAsyncHandleWrite(ac); /* hiredis meets the error itself and disconnects */
      return;
    }
    if (n > 0 && (size_t)n < len) {
      sdsrange(c->obuf, (int)n, -1);
    } else if (n > 0) { /* all written: keep the allocation unless it is large */
      sds empty = sdsalloc(c->obuf) > REDISUV_OBUF_KEEP ? sdsempty() : NULL;
      if (empty) {
        sdsfree(c->obuf);
        c->obuf = empty;
      } else {
        sdsclear(c->obuf); /* small, or no memory for a new one */
      }
    }
  }
  /* What redisAsyncHandleWrite arms after a write. */
  if (sdslen(c->obuf) > 0) {
    if (ac->ev.addWrite) ac->ev.addWrite(ac->ev.data);
  } else if (ac->ev.delWrite) {
    ac->ev.delWrite(ac->ev.data);
  }
  if (ac->ev.addRead) ac->ev.addRead(ac->ev.data);
}

static void redisuv_apply(redisuv_events *p) {
  if (p->events)
    uv_poll_start(&p->poll, p->events, redisuv_on_poll);
  else
    uv_poll_stop(&p->poll);
}

static void redisuv_on_poll(uv_poll_t *handle, int status, int events) {
  redisuv_events *p = handle->data;
  if (status < 0) {
    /* libuv has stopped the handle. Let hiredis find the socket error itself:
     * a pending connect fails in HandleWrite, an open socket in HandleRead. */
    events = p->events ? p->events : UV_READABLE;
    if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
    if (p->ac) redisAsyncHandleRead(p->ac);
    if (p->ac) redisuv_apply(p); /* still alive: poll again */
    return;
  }
  /* Either call may free the context (cleanup sets p->ac to NULL). */
  if (p->ac && (events & UV_WRITABLE)) redisuv_write(p->ac);
  if (!(events & UV_READABLE)) return;
  /* hiredis reads at most 16 KB per call. A subscriber that fell behind by
   * more would take one loop turn, and so one flush of every streaming
   * client, per 16 KB; reading what has already arrived first lets a client
   * owed several messages get them in one write. Bounded, so that one busy
   * connection cannot hold the loop. */
  int pending = 0;
  for (int i = 0; i < REDISUV_MAX_READS_PER_POLL && p->ac; i++) {
    redisAsyncHandleRead(p->ac);
    pending = 0;
    if (!p->ac || ioctl(p->ac->c.fd, FIONREAD, &pending) != 0 || pending <= 0) break;
  }
  /* p outlives the context until its close callbacks, so this is safe either way */
  if (pending > 0 && !p->behind) p->behind_since = uv_now(p->poll.loop);
  p->behind = pending > 0;
}

uint64_t redisuv_behind_ms(const redisAsyncContext *ac) {
  const redisuv_events *p = ac ? ac->ev.data : NULL;
  return p && p->behind ? uv_now(p->poll.loop) - p->behind_since : 0;
}

/* Commands queued by this turn's callbacks (a POST /quotes's PUBLISHes) are
 * written in the check phase, right after those callbacks, rather than when
 * the next poll reports the socket writable: that poll comes after the
 * prepare phase's flush of every streaming client, which at 10,000 clients
 * takes tens of milliseconds, and a quote's answer from Redis one flush
 * later again. Whatever the socket does not take waits for writable. */
static void redisuv_on_soon(uv_check_t *h) {
  (void)h;
  /* One pass over the connections listed when it starts: a write the socket
   * does not take all of (a stalled Redis, a paused TLS relay) asks for
   * writable again, which lists the connection again, at the end; draining
   * until the list is empty would then spin here for as long as the peer
   * does not read. What is left waits for the poll. Unlinked before its
   * write: a write that fails may tear down this connection or others, and
   * their cleanup unlinks them (so the count only bounds the pass). */
  size_t n = 0;
  for (const redisuv_events *p = soon_first; p; p = p->soon_next) n++;
  while (soon_first && n-- > 0) {
    redisuv_events *p = soon_first;
    soon_unlink(p);
    if (p->ac && (p->events & UV_WRITABLE)) redisuv_write(p->ac);
  }
}

static void soon_add(redisuv_events *p) {
  if (p->soon_listed) return;
  p->soon_listed = true;
  if (soon_last) soon_last->soon_next = p;
  else soon_first = p;
  soon_last = p;
  uv_check_start(&p->soon, redisuv_on_soon);
}

static void redisuv_want(void *privdata, int add, int ev) {
  redisuv_events *p = privdata;
  if (add && ev == UV_WRITABLE && p->ac && (p->ac->c.flags & REDIS_CONNECTED)) soon_add(p);
  int next = add ? (p->events | ev) : (p->events & ~ev);
  if (next == p->events || !p->ac) return;
  p->events = next;
  redisuv_apply(p);
}

static void redisuv_add_read(void *pd) { redisuv_want(pd, 1, UV_READABLE); }
static void redisuv_del_read(void *pd) { redisuv_want(pd, 0, UV_READABLE); }
static void redisuv_add_write(void *pd) { redisuv_want(pd, 1, UV_WRITABLE); }
static void redisuv_del_write(void *pd) { redisuv_want(pd, 0, UV_WRITABLE); }

static void redisuv_on_close(uv_handle_t *h) {
  redisuv_events *p = h->data;
  if (--p->open_handles == 0) free(p);
}

static void redisuv_cleanup(void *privdata) {
  redisuv_events *p = privdata;
  redisAsyncContext *ac = p->ac;
  if (!ac) return;
  /* hiredis may run cleanup more than once and may still call the hooks
   * while it runs pending callbacks: detach them all now. uv_close stops
   * the poll synchronously, before hiredis closes the fd. */
  ac->ev.data = NULL;
  ac->ev.addRead = ac->ev.delRead = NULL;
  ac->ev.addWrite = ac->ev.delWrite = NULL;
  ac->ev.cleanup = NULL;
  p->ac = NULL;
  soon_unlink(p);
  uv_close((uv_handle_t *)&p->poll, redisuv_on_close);
  uv_close((uv_handle_t *)&p->soon, redisuv_on_close);
}

int redisuv_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  if (ac->ev.data) return UV_EINVAL;
  redisuv_events *p = calloc(1, sizeof(*p));
  if (!p) return UV_ENOMEM;
  int rc = uv_poll_init(loop, &p->poll, ac->c.fd);
  if (rc < 0) {
    free(p);
    return rc;
  }
  p->poll.data = p;
  uv_check_init(loop, &p->soon);
  uv_unref((uv_handle_t *)&p->soon); /* the poll keeps the loop alive, not this */
  p->soon.data = p;
  p->open_handles = 2;
  p->ac = ac;
  ac->ev.data = p;
  ac->ev.addRead = redisuv_add_read;
  ac->ev.delRead = redisuv_del_read;
  ac->ev.addWrite = redisuv_add_write;
  ac->ev.delWrite = redisuv_del_write;
  ac->ev.cleanup = redisuv_cleanup;
  return 0;
}
