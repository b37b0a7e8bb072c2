/* td_buf: reference counts, the live counters the leak checks rely on, and
 * the pool of small buffers (size classes, reuse of the last freed). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/td_limits.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOLED 0 /* buf.c skips the pool under ASan */
#else
#define POOLED 1
#endif

static void test_refs_and_live_counters(void **state) {
  uint64_t count = buf_live_count(), bytes = buf_live_bytes();
  td_buf *b = buf_from("hello", 5);
  assert_non_null(b);
  assert_int_equal(b->len, 5);
  assert_memory_equal(b->data, "hello", 5);
  assert_true(b->cap >= 5);
  assert_int_equal(buf_live_count(), count + 1);
  assert_int_equal(buf_live_bytes(), bytes + b->cap);
  buf_ref(b);
  buf_unref(b);
  assert_int_equal(buf_live_count(), count + 1); /* one reference left */
  buf_unref(b);
  assert_int_equal(buf_live_count(), count);
  assert_int_equal(buf_live_bytes(), bytes);
  buf_unref(NULL);
}

/* Small buffers come in two classes, each with all of its room usable;
 * anything larger is allocated to size. */
static void test_size_classes(void **state) {
  size_t small = TD_BUF_POOL_SMALL_BYTES - sizeof(td_buf);
  size_t large = TD_BUF_POOL_LARGE_BYTES - sizeof(td_buf);
  td_buf *a = buf_new(1), *b = buf_new(small), *c = buf_new(small + 1), *d = buf_new(large + 1);
  assert_true(a && b && c && d);
  if (POOLED) {
    assert_int_equal(a->cap, small);
    assert_int_equal(b->cap, small);
    assert_int_equal(c->cap, large);
  }
  assert_int_equal(d->cap, large + 1);
  memset(a->data, 'x', a->cap); /* the whole room is writable (ASan checks the rest) */
  memset(c->data, 'y', c->cap);
  buf_unref(a);
  buf_unref(b);
  buf_unref(c);
  buf_unref(d);
}

/* The buffer freed last is the one handed out next: still in cache. */
static void test_last_freed_is_reused(void **state) {
  if (!POOLED) skip();
  td_buf *a = buf_new(100), *b = buf_new(200);
  buf_unref(a);
  buf_unref(b);
  td_buf *c = buf_new(150);
  assert_ptr_equal(c, b);
  assert_int_equal(c->refs, 1);
  assert_int_equal(c->len, 0);
  td_buf *d = buf_new(10);
  assert_ptr_equal(d, a);
  buf_unref(c);
  buf_unref(d);
}

/* More small buffers than the pool keeps, all freed: the pool keeps
 * TD_BUF_POOL_MAX of them and gives the rest back; every buffer held its
 * own bytes until then. */
static void test_pool_is_bounded(void **state) {
  enum { N = TD_BUF_POOL_MAX + 100 };
  static td_buf *v[N];
  buf_pool_release();
  assert_int_equal(buf_pooled_count(), 0);
  for (int i = 0; i < N; i++) {
    v[i] = buf_new(64);
    assert_non_null(v[i]);
    v[i]->len = (uint32_t)snprintf(v[i]->data, v[i]->cap, "%d", i);
  }
  for (int i = 0; i < N; i++) {
    char want[16];
    snprintf(want, sizeof(want), "%d", i);
    assert_memory_equal(v[i]->data, want, v[i]->len);
    buf_unref(v[i]);
  }
  assert_int_equal(buf_pooled_count(), POOLED ? TD_BUF_POOL_MAX : 0);
  buf_pool_release();
  assert_int_equal(buf_pooled_count(), 0);
}

/* The bound is on the whole pool: both classes filled past it together
 * keep TD_BUF_POOL_MAX buffers, not that many per class (7,342 pooled were
 * seen against a documented 4,096). */
static void test_pool_bound_covers_every_class(void **state) {
  enum { N = TD_BUF_POOL_MAX };
  static td_buf *small[N], *large[N];
  buf_pool_release();
  for (int i = 0; i < N; i++) {
    small[i] = buf_new(16);
    large[i] = buf_new(TD_BUF_POOL_SMALL_BYTES);
    assert_true(small[i] && large[i]);
  }
  for (int i = 0; i < N; i++) {
    buf_unref(small[i]);
    buf_unref(large[i]);
  }
  assert_int_equal(buf_pooled_count(), POOLED ? TD_BUF_POOL_MAX : 0);
  /* taking from either class frees a place for the other */
  td_buf *b = buf_new(TD_BUF_POOL_SMALL_BYTES);
  assert_int_equal(buf_pooled_count(), POOLED ? TD_BUF_POOL_MAX - 1 : 0);
  buf_unref(b);
  assert_int_equal(buf_pooled_count(), POOLED ? TD_BUF_POOL_MAX : 0);
  buf_pool_release();
  assert_int_equal(buf_pooled_count(), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refs_and_live_counters),
      cmocka_unit_test(test_size_classes),
      cmocka_unit_test(test_last_freed_is_reused),
      cmocka_unit_test(test_pool_is_bounded),
      cmocka_unit_test(test_pool_bound_covers_every_class),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
