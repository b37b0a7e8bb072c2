#include "base/buf.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/td_limits.h"

static uint64_t live_count, live_bytes;

/* ---- the pool of small buffers -------------------------------------------
 * Every quote makes a payload buffer (and, with subscribers, a frame per
 * transport) and the history ring frees the oldest one a thousand quotes
 * later per symbol. glibc keeps 7 freed chunks per size in its thread
 * cache, so at a batch's pace nearly every malloc and free of these took
 * the slow path (_int_malloc was 8 % of tickerd's samples under POST
 * /quotes load), and the chunk handed out was cold. A LIFO stack per size
 * class hands out the buffer freed last, still in cache. Sanitizer builds
 * skip the pool so that ASan still sees every use after free. */

#if defined(__SANITIZE_ADDRESS__)
#define BUF_POOL_ON false
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUF_POOL_ON false
#endif
#endif
#ifndef BUF_POOL_ON
#define BUF_POOL_ON true
#endif

enum { POOL_SMALL, POOL_LARGE, POOL_CLASSES };

static const uint32_t pool_cap[POOL_CLASSES] = {
  TD_BUF_POOL_SMALL_BYTES - sizeof(td_buf),
  TD_BUF_POOL_LARGE_BYTES - sizeof(td_buf),
};

static struct {
  td_buf *b[TD_BUF_POOL_MAX];
  uint32_t n;
} pool[POOL_CLASSES];
/* Buffers in all classes: TD_BUF_POOL_MAX bounds the pool, not each class. */
static uint32_t pooled;

/* The class a buffer of `cap` bytes is made in, or -1: malloc'd to size. */
static int pool_class_for(size_t cap) {
  if (!BUF_POOL_ON) return -1;
  if (cap <= pool_cap[POOL_SMALL]) return POOL_SMALL;
  if (cap <= pool_cap[POOL_LARGE]) return POOL_LARGE;
  return -1;
}

/* ---- buffers ---------------------------------------------------------------- */

td_buf *buf_new(size_t cap) {
  if (cap > UINT32_MAX) return NULL;
  int k = pool_class_for(cap);
  td_buf *b;
  if (k >= 0) {
    cap = pool_cap[k];
    if (pool[k].n) {
      b = pool[k].b[--pool[k].n];
      pooled--;
    } else {
      b = malloc(sizeof(*b) + cap);
    }
  } else {
    b = malloc(sizeof(*b) + cap);
  }
  if (!b) return NULL;
  b->refs = 1;
  b->len = 0;
  b->cap = (uint32_t)cap;
  live_count++;
  live_bytes += cap;
  return b;
}

td_buf *buf_from(const void *p, size_t n) {
  td_buf *b = buf_new(n);
  if (!b) return NULL;
  memcpy(b->data, p, n);
  b->len = (uint32_t)n;
  return b;
}

void buf_unref(td_buf *b) {
  if (!b || --b->refs > 0) return;
  live_count--;
  live_bytes -= b->cap;
  /* Class buffers are made with exactly the class's room (buf_new). */
  int k = pool_class_for(b->cap);
  if (k >= 0 && b->cap == pool_cap[k] && pooled < TD_BUF_POOL_MAX) {
    pool[k].b[pool[k].n++] = b;
    pooled++;
    return;
  }
  free(b);
}

uint64_t buf_live_count(void) { return live_count; }
uint64_t buf_live_bytes(void) { return live_bytes; }

uint64_t buf_pooled_count(void) { return pooled; }

void buf_pool_release(void) {
  for (int k = 0; k < POOL_CLASSES; k++)
    while (pool[k].n) free(pool[k].b[--pool[k].n]);
  pooled = 0;
}
