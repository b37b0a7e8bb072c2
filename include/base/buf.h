/* Reference-counted byte buffers: one encoded message, many client queues.
 * A quote frame is encoded once and every subscriber's queue holds a
 * reference; the bytes are freed when the last write that used them ends. */
#ifndef TD_BUF_H
#define TD_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct td_buf {
  uint32_t refs;
  uint32_t len;   /* bytes used */
  uint32_t cap;   /* bytes allocated after the header */
  char data[];
} td_buf;

/* A buffer with `cap` bytes of room, len 0, one reference. NULL on OOM. */
td_buf *buf_new(size_t cap);
/* A buffer holding a copy of `p[0..n)`, one reference. */
td_buf *buf_from(const void *p, size_t n);
static inline td_buf *buf_ref(td_buf *b) { b->refs++; return b; }
void buf_unref(td_buf *b);
/* Live buffers and their bytes, for /status and the leak checks in tests. */
uint64_t buf_live_count(void);
uint64_t buf_live_bytes(void);
/* Freed small buffers kept for reuse: at most TD_BUF_POOL_MAX in all. */
uint64_t buf_pooled_count(void);
/* Frees the kept buffers: at exit, so that leak checkers see a clean heap. */
void buf_pool_release(void);

#endif
