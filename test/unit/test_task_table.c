/* task_table: the id table against a brute-force reference through many
 * doublings, with removals during migration; and that a doubling moves the
 * old array over a bit at a time rather than in the insert that grew it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "app/task_table.h"

typedef struct entry {
  uint8_t id[TTAB_ID_LEN];
  int live;
} entry;

static uint64_t rng = 0x243F6A8885A308D3ULL;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void random_id(uint8_t id[TTAB_ID_LEN]) {
  uint64_t a = next_rand(), b = next_rand();
  memcpy(id, &a, 8);
  memcpy(id + 8, &b, 8);
}

/* Every live entry is found, and found as itself; removed ones are not. */
static void check_all(const ttab *t, entry *e, size_t n, size_t live) {
  for (size_t i = 0; i < n; i++) {
    void *f = ttab_find(t, e[i].id);
    if (e[i].live) assert_ptr_equal(f, &e[i]);
    else assert_null(f);
  }
  assert_int_equal(ttab_count(t), live);
}

static void test_matches_reference_through_growth(void **state) {
  enum { N = 40000 };
  entry *e = calloc(N, sizeof(*e));
  assert_non_null(e);
  ttab t;
  assert_int_equal(ttab_init(&t, 16), 0);
  size_t n = 0, live = 0;
  int migrations_seen = 0;
  while (n < N) {
    /* mostly inserts, some removals of random live entries */
    if (live > 0 && next_rand() % 3 == 0) {
      size_t k = (size_t)(next_rand() % n);
      if (e[k].live) {
        ttab_remove(&t, e[k].id);
        e[k].live = 0;
        live--;
      }
    } else {
      random_id(e[n].id);
      e[n].live = 1;
      assert_int_equal(ttab_insert(&t, &e[n]), 0);
      n++;
      live++;
    }
    if (ttab_migrating(&t)) migrations_seen++;
    /* a full check now and then, and always while migrating early on */
    if ((n & 1023) == 0 || (ttab_migrating(&t) && n < 4096)) check_all(&t, e, n, live);
  }
  check_all(&t, e, n, live);
  assert_true(migrations_seen > 0);
  /* removing everything leaves an empty table */
  for (size_t i = 0; i < n; i++)
    if (e[i].live) ttab_remove(&t, e[i].id);
  assert_int_equal(ttab_count(&t), 0);
  assert_false(ttab_migrating(&t));
  uint8_t absent[TTAB_ID_LEN];
  random_id(absent);
  assert_null(ttab_find(&t, absent));
  ttab_release(&t);
  free(e);
}

/* The insert that doubles the table moves none of the old array; each
 * later call moves a bounded part of it, and it is all over well before
 * the next doubling. */
static void test_growth_is_incremental(void **state) {
  enum { CAP = 1 << 14, N = CAP };
  entry *e = calloc(N, sizeof(*e));
  assert_non_null(e);
  ttab t;
  assert_int_equal(ttab_init(&t, CAP), 0);
  size_t i = 0;
  while (!ttab_migrating(&t)) {
    random_id(e[i].id);
    assert_int_equal(ttab_insert(&t, &e[i]), 0);
    i++;
  }
  assert_int_equal(i, CAP * 3 / 4 + 1); /* doubled at 3/4 */
  assert_int_equal(t.old.used, CAP * 3 / 4); /* all still in the old array */
  assert_int_equal(t.cur.used, 1);
  size_t calls = 0, before = t.old.used;
  while (ttab_migrating(&t)) {
    random_id(e[i].id);
    assert_int_equal(ttab_insert(&t, &e[i]), 0);
    i++;
    calls++;
    /* a step looks at TTAB_MIGRATE_STEP slots plus the rest of a cluster */
    assert_true(before - t.old.used <= TTAB_MIGRATE_STEP + 64);
    before = t.old.used;
  }
  assert_true(calls >= CAP / TTAB_MIGRATE_STEP / 2);
  assert_true(calls <= CAP / TTAB_MIGRATE_STEP + 1);
  for (size_t k = 0; k < i; k++) assert_ptr_equal(ttab_find(&t, e[k].id), &e[k]);
  ttab_release(&t);
  free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_matches_reference_through_growth),
      cmocka_unit_test(test_growth_is_incremental),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
