/* quote_store: sequences, duplicates, ring wraparound, age, symbol limit,
 * recovery across symbols, and that every payload reference is returned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "market/quote_store.h"

#define E1 0x1111111111111111ull
#define E2 0x2222222222222222ull

static uint64_t live_before;

static int setup(void **state) {
  live_before = buf_live_count();
  return 0;
}

/* Every test frees its store: no buffer may outlive it. */
static int teardown(void **state) {
  assert_int_equal(buf_live_count(), live_before);
  return 0;
}

/* Inserts a payload "SYM:epoch:seq" like the real ones, returns the result. */
static int put(qstore *qs, smsg_kind k, const char *sym, uint64_t epoch, uint64_t seq, uint64_t t) {
  char p[64];
  int n = snprintf(p, sizeof(p), "%s:%llx:%llu", sym, (unsigned long long)epoch,
                   (unsigned long long)seq);
  td_buf *b = buf_from(p, (size_t)n);
  int rc = qstore_insert(qs, k, sym, strlen(sym), b, epoch, seq, t);
  buf_unref(b);
  return rc;
}

static void test_epoch(void **state) {
  qstore *a = qstore_new(10, 1000, 10), *b = qstore_new(10, 1000, 10);
  assert_non_null(a);
  const char *h = qstore_epoch_hex(a);
  assert_int_equal(strlen(h), SMSG_EPOCH_LEN);
  for (const char *p = h; *p; p++) assert_true((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));
  uint64_t e;
  assert_int_equal(qstore_epoch_parse(h, strlen(h), &e), 0);
  assert_true(e == qstore_epoch(a));
  assert_true(qstore_epoch(a) != qstore_epoch(b));   /* 2^-64 chance of a false failure */
  char out[SMSG_EPOCH_LEN + 1];
  qstore_epoch_format(0xab, out);
  assert_string_equal(out, "00000000000000ab");
  assert_int_equal(qstore_epoch_parse("00000000000000AB", 16, &e), -EINVAL);
  assert_int_equal(qstore_epoch_parse("00000000000000a", 15, &e), -EINVAL);
  qstore_free(a);
  qstore_free(b);
}

static void test_next_seq(void **state) {
  qstore *qs = qstore_new(10, 1000, 2);
  assert_int_equal(qstore_next_seq(qs, SMSG_QUOTE, "AAPL", 4), 1);
  assert_int_equal(qstore_next_seq(qs, SMSG_QUOTE, "AAPL", 4), 2);
  assert_int_equal(qstore_next_seq(qs, SMSG_TRADE, "AAPL", 4), 1);   /* per kind */
  assert_int_equal(qstore_next_seq(qs, SMSG_QUOTE, "MSFT", 4), 1);   /* per symbol */
  assert_int_equal(qstore_next_seq(qs, SMSG_QUOTE, "AAPL", 4), 3);
  assert_int_equal(qstore_next_seq(qs, SMSG_QUOTE, "GOOG", 4), 0);   /* limit of 2 */
  assert_int_equal(qstore_next_seq(qs, SMSG_QUOTE, "aapl", 4), 0);   /* invalid */
  qstore_stats st;
  qstore_get_stats(qs, &st);
  assert_int_equal(st.symbols, 2);
  assert_int_equal(st.rejected_symbols, 1);
  qstore_free(qs);
}

static void test_duplicates(void **state) {
  qstore *qs = qstore_new(10, 100000, 10);
  assert_int_equal(put(qs, SMSG_QUOTE, "AAPL", E1, 1, 0), QSTORE_INSERTED);
  assert_int_equal(put(qs, SMSG_QUOTE, "AAPL", E1, 2, 0), QSTORE_INSERTED);
  assert_int_equal(put(qs, SMSG_QUOTE, "AAPL", E1, 2, 0), QSTORE_DUPLICATE);   /* echo */
  assert_int_equal(put(qs, SMSG_QUOTE, "AAPL", E1, 1, 0), QSTORE_DUPLICATE);   /* older */
  assert_int_equal(put(qs, SMSG_QUOTE, "AAPL", E2, 1, 0), QSTORE_INSERTED);    /* other epoch */
  assert_int_equal(put(qs, SMSG_QUOTE, "AAPL", E1, 3, 0), QSTORE_INSERTED);    /* interleaved */
  assert_int_equal(put(qs, SMSG_QUOTE, "AAPL", E2, 1, 0), QSTORE_DUPLICATE);
  assert_int_equal(put(qs, SMSG_TRADE, "AAPL", E1, 1, 0), QSTORE_INSERTED);    /* other kind */
  qstore_stats st;
  qstore_get_stats(qs, &st);
  assert_int_equal(st.inserts, 5);
  assert_int_equal(st.duplicates, 3);
  qstore_entry e;
  assert_true(qstore_latest(qs, SMSG_QUOTE, "AAPL", 4, &e));
  assert_true(e.epoch == E1 && e.seq == 3 && e.ordinal == 4);
  assert_memory_equal(e.payload->data, "AAPL:1111111111111111:3", e.payload->len);
  assert_false(qstore_latest(qs, SMSG_BAR, "AAPL", 4, &e));
  assert_false(qstore_latest(qs, SMSG_QUOTE, "MSFT", 4, &e));
  qstore_free(qs);
}

static void test_ring_wraparound(void **state) {
  /* 40 > QSTORE_RING_MIN: the ring grows twice, then wraps. */
  qstore *qs = qstore_new(40, 1000000, 10);
  for (uint64_t i = 1; i <= 100; i++) assert_int_equal(put(qs, SMSG_QUOTE, "AAPL", E1, i, i), 1);
  qstore_entry out[64];
  size_t n = qstore_history(qs, SMSG_QUOTE, "AAPL", 4, 64, 100, out);
  assert_int_equal(n, 40);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(out[i].seq, 61 + i);   /* oldest first */
    assert_string_equal(out[i].symbol, "AAPL");
  }
  n = qstore_history(qs, SMSG_QUOTE, "AAPL", 4, 3, 100, out);
  assert_int_equal(n, 3);
  assert_int_equal(out[0].seq, 98);
  assert_int_equal(out[2].seq, 100);
  qstore_stats st;
  qstore_get_stats(qs, &st);
  assert_int_equal(st.entries, 40);
  assert_int_equal(qstore_find(qs, SMSG_QUOTE, "AAPL", 4, E1, 60), 0);   /* dropped */
  assert_int_equal(qstore_find(qs, SMSG_QUOTE, "AAPL", 4, E1, 61), 61);
  assert_int_equal(qstore_history(qs, SMSG_QUOTE, "MSFT", 4, 3, 100, out), 0);
  qstore_free(qs);
}

static void test_age_bound(void **state) {
  qstore *qs = qstore_new(100, 1000, 10);
  for (uint64_t i = 1; i <= 10; i++) put(qs, SMSG_QUOTE, "AAPL", E1, i, i * 200);   /* t=200..2000 */
  qstore_entry out[16];
  /* At t=2000 entries received at 1000..2000 are within 1000 ms. */
  size_t n = qstore_history(qs, SMSG_QUOTE, "AAPL", 4, 16, 2000, out);
  assert_int_equal(n, 6);
  assert_int_equal(out[0].recv_ms, 1000);
  qstore_stats st;
  qstore_get_stats(qs, &st);
  assert_int_equal(st.entries, 10 - 4);   /* inserts already pruned t<1000 at t=2000 */
  qstore_expire(qs, 10000);
  qstore_get_stats(qs, &st);
  assert_int_equal(st.entries, 0);
  assert_int_equal(st.expired, 10);
  assert_int_equal(qstore_history(qs, SMSG_QUOTE, "AAPL", 4, 16, 10000, out), 0);
  /* The latest stays, however old, and a client holding it has missed nothing. */
  qstore_entry e;
  assert_true(qstore_latest(qs, SMSG_QUOTE, "AAPL", 4, &e));
  assert_int_equal(e.seq, 10);
  assert_int_equal(qstore_find(qs, SMSG_QUOTE, "AAPL", 4, E1, 10), 10);
  assert_int_equal(qstore_find(qs, SMSG_QUOTE, "AAPL", 4, E1, 9), 0);
  /* A quiet ring was given back and grows again. */
  assert_int_equal(put(qs, SMSG_QUOTE, "AAPL", E1, 11, 10001), 1);
  assert_int_equal(qstore_history(qs, SMSG_QUOTE, "AAPL", 4, 16, 10001, out), 1);
  qstore_free(qs);
}

static void test_symbol_limit_and_list(void **state) {
  qstore *qs = qstore_new(4, 1000, 3);
  assert_int_equal(put(qs, SMSG_QUOTE, "C", E1, 1, 0), 1);
  assert_int_equal(put(qs, SMSG_QUOTE, "A", E1, 1, 0), 1);
  assert_int_equal(put(qs, SMSG_TRADE, "B", E1, 1, 0), 1);
  assert_int_equal(put(qs, SMSG_QUOTE, "D", E1, 1, 0), -ENOSPC);
  assert_int_equal(put(qs, SMSG_QUOTE, "a", E1, 1, 0), -EINVAL);
  assert_int_equal(put(qs, SMSG_QUOTE, "B", E1, 1, 0), 1);   /* known symbol, new kind */
  const char *syms[8];
  assert_int_equal(qstore_symbols(qs, SMSG_QUOTE, syms, 8), 3);
  assert_string_equal(syms[0], "C");
  assert_string_equal(syms[1], "A");
  assert_string_equal(syms[2], "B");
  assert_int_equal(qstore_symbols(qs, SMSG_QUOTE, syms, 1), 3);
  assert_int_equal(qstore_symbols(qs, SMSG_TRADE, syms, 8), 1);
  qstore_stats st;
  qstore_get_stats(qs, &st);
  assert_int_equal(st.rejected_symbols, 1);
  qstore_free(qs);
}

static void test_many_symbols(void **state) {
  /* Enough to rehash the symbol table several times. */
  qstore *qs = qstore_new(2, 1000, 5000);
  char s[16];
  for (int i = 0; i < 5000; i++) {
    snprintf(s, sizeof(s), "S%d", i);
    assert_int_equal(put(qs, SMSG_QUOTE, s, E1, 1, 0), 1);
  }
  for (int i = 0; i < 5000; i += 7) {
    snprintf(s, sizeof(s), "S%d", i);
    qstore_entry e;
    assert_true(qstore_latest(qs, SMSG_QUOTE, s, strlen(s), &e));
    assert_int_equal(e.ordinal, (uint64_t)i + 1);
  }
  assert_int_equal(put(qs, SMSG_QUOTE, "X", E1, 1, 0), -ENOSPC);
  qstore_free(qs);
}

static void test_recovery_across_symbols(void **state) {
  qstore *qs = qstore_new(5, 1000, 10);
  /* Ordinals 1..12 interleaved over three symbols. */
  const char *order[] = {"A", "B", "A", "C", "B", "A", "A", "C", "B", "A", "A", "B"};
  uint64_t seq[3] = {0};
  for (int i = 0; i < 12; i++) {
    int k = order[i][0] - 'A';
    assert_int_equal(put(qs, SMSG_QUOTE, order[i], E1, ++seq[k], 100), 1);
  }
  /* A client of A and B last saw B's seq 1 (ordinal 2). */
  uint64_t x = qstore_find(qs, SMSG_QUOTE, "B", 1, E1, 1);
  assert_int_equal(x, 2);
  const char *syms[] = {"A", "B", "B", "NOPE"};
  qstore_iter it;
  assert_int_equal(qstore_iter_init(&it, qs, SMSG_QUOTE, syms, 4, x, 100), 0);
  /* A holds its last 5 (ordinals 3,6,7,10,11), B holds 2,5,9,12. */
  uint64_t want[] = {3, 5, 6, 7, 9, 10, 11, 12};
  qstore_entry e;
  size_t n = 0;
  while (qstore_iter_next(&it, &e)) {
    assert_true(n < 8);
    assert_int_equal(e.ordinal, want[n]);
    assert_string_equal(e.symbol, order[want[n] - 1]);
    if (n == 2) assert_int_equal(put(qs, SMSG_QUOTE, "B", E1, ++seq[1], 100), 1);   /* not replayed */
    n++;
  }
  assert_int_equal(n, 8);
  qstore_iter_free(&it);

  /* Past the age bound nothing is replayed. */
  assert_int_equal(qstore_iter_init(&it, qs, SMSG_QUOTE, syms, 2, 0, 100 + 1001), 0);
  assert_false(qstore_iter_next(&it, &e));
  qstore_iter_free(&it);
  /* A's seq 1 (ordinal 1) rotated out of its ring of 5. */
  assert_int_equal(qstore_find(qs, SMSG_QUOTE, "A", 1, E1, 1), 0);
  assert_int_equal(qstore_iter_init(&it, qs, SMSG_QUOTE, NULL, 0, 0, 100), 0);
  assert_false(qstore_iter_next(&it, &e));
  qstore_iter_free(&it);
  qstore_free(qs);
}

static void test_payload_shared(void **state) {
  qstore *qs = qstore_new(3, 1000, 10);
  td_buf *b = buf_from("x", 1);
  assert_int_equal(qstore_insert(qs, SMSG_QUOTE, "A", 1, b, E1, 1, 0), 1);
  assert_int_equal(b->refs, 3);   /* ours, the ring's, the latest's */
  assert_int_equal(qstore_insert(qs, SMSG_QUOTE, "A", 1, b, E1, 1, 0), 0);
  assert_int_equal(b->refs, 3);   /* a duplicate takes no reference */
  qstore_free(qs);
  assert_int_equal(b->refs, 1);
  buf_unref(b);
}

/* Across epochs the quote time "t" decides the latest; within one, seq. */
static int put_at(qstore *qs, uint64_t epoch, uint64_t seq, const char *t) {
  char p[160];
  int n = snprintf(p, sizeof(p), "{\"T\":\"q\",\"S\":\"EP\",\"bp\":1,\"t\":\"%s\",\"seq\":%llu,\"epoch\":\"x\"}", t,
                   (unsigned long long)seq);
  td_buf *b = buf_from(p, (size_t)n);
  int rc = qstore_insert(qs, SMSG_QUOTE, "EP", 2, b, epoch, seq, 1);
  buf_unref(b);
  return rc;
}

static void test_latest_across_epochs(void **state) {
  qstore *qs = qstore_new(8, 60000, 16);
  qstore_entry e;
  assert_int_equal(put_at(qs, E1, 5, "2026-11-21T20:00:05Z"), QSTORE_INSERTED);
  /* older, from another epoch: stored in history, not the latest */
  assert_int_equal(put_at(qs, E2, 900, "2026-11-21T20:00:04.999999999Z"), QSTORE_INSERTED);
  assert_true(qstore_latest(qs, SMSG_QUOTE, "EP", 2, &e));
  assert_true(e.epoch == E1 && e.seq == 5);
  qstore_entry h[8];
  assert_int_equal(qstore_history(qs, SMSG_QUOTE, "EP", 2, 8, 1, h), 2);
  /* the same instant written with an offset is not older */
  assert_int_equal(put_at(qs, E2, 901, "2026-11-21T21:00:05+01:00"), QSTORE_INSERTED);
  assert_true(qstore_latest(qs, SMSG_QUOTE, "EP", 2, &e));
  assert_true(e.epoch == E2 && e.seq == 901);
  /* within the epoch, seq orders whatever the time says */
  assert_int_equal(put_at(qs, E2, 902, "2020-01-01T00:00:00Z"), QSTORE_INSERTED);
  assert_true(qstore_latest(qs, SMSG_QUOTE, "EP", 2, &e));
  assert_int_equal(e.seq, 902);
  qstore_free(qs);
}

/* Messages without a position (another producer's): each is stored, none
 * is a duplicate of another, none can be resumed from, and the latest is
 * chosen by the rule across epochs (the time "t"). */
static void test_without_position(void **state) {
  qstore *qs = qstore_new(8, 60000, 16);
  qstore_entry e;
  assert_int_equal(put_at(qs, E1, 5, "2026-11-21T20:00:05Z"), QSTORE_INSERTED);
  assert_int_equal(put_at(qs, 0, QSTORE_NO_POSITION, "2026-11-21T20:00:06Z"), QSTORE_INSERTED);
  assert_int_equal(put_at(qs, 0, QSTORE_NO_POSITION, "2026-11-21T20:00:07Z"), QSTORE_INSERTED);
  assert_true(qstore_latest(qs, SMSG_QUOTE, "EP", 2, &e));
  assert_true(e.seq == QSTORE_NO_POSITION && e.ordinal == 3);
  /* an older one without a position goes into history only */
  assert_int_equal(put_at(qs, 0, QSTORE_NO_POSITION, "2026-11-21T20:00:01Z"), QSTORE_INSERTED);
  assert_true(qstore_latest(qs, SMSG_QUOTE, "EP", 2, &e));
  assert_int_equal(e.ordinal, 3);
  qstore_entry h[8];
  assert_int_equal(qstore_history(qs, SMSG_QUOTE, "EP", 2, 8, 1, h), 4);
  assert_int_equal(qstore_find(qs, SMSG_QUOTE, "EP", 2, 0, QSTORE_NO_POSITION), 0);
  assert_int_equal(qstore_find(qs, SMSG_QUOTE, "EP", 2, E1, 5), 1);
  /* the publisher's sequence goes on as if they were not there */
  assert_int_equal(put_at(qs, E1, 5, "2026-11-21T20:00:08Z"), QSTORE_DUPLICATE);
  assert_int_equal(put_at(qs, E1, 6, "2026-11-21T20:00:08Z"), QSTORE_INSERTED);
  assert_true(qstore_latest(qs, SMSG_QUOTE, "EP", 2, &e));
  assert_true(e.epoch == E1 && e.seq == 6);
  qstore_free(qs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_epoch, setup, teardown),
    cmocka_unit_test_setup_teardown(test_next_seq, setup, teardown),
    cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
    cmocka_unit_test_setup_teardown(test_ring_wraparound, setup, teardown),
    cmocka_unit_test_setup_teardown(test_age_bound, setup, teardown),
    cmocka_unit_test_setup_teardown(test_symbol_limit_and_list, setup, teardown),
    cmocka_unit_test_setup_teardown(test_many_symbols, setup, teardown),
    cmocka_unit_test_setup_teardown(test_recovery_across_symbols, setup, teardown),
    cmocka_unit_test_setup_teardown(test_payload_shared, setup, teardown),
    cmocka_unit_test_setup_teardown(test_latest_across_epochs, setup, teardown),
    cmocka_unit_test_setup_teardown(test_without_position, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
