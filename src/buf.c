#include "buf.h"

#include <stdlib.h>
#include <string.h>

static uint64_t live_count, live_bytes;

td_buf *buf_new(size_t cap) {
  if (cap > UINT32_MAX) return NULL;
  td_buf *b = malloc(sizeof(*b) + cap);
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
  free(b);
}

uint64_t buf_live_count(void) { return live_count; }
uint64_t buf_live_bytes(void) { return live_bytes; }
