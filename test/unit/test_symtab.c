/* symtab: ids are dense and stable, lookup by name and by id, the limit
 * refuses (and counts) new symbols but keeps answering known ones, and
 * names outlive every later insert. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/td_limits.h"
#include "market/quote_store.h"
#include "market/symtab.h"

static uint32_t intern(symtab *t, const char *s) {
  uint32_t id = SYMTAB_NONE;
  assert_int_equal(symtab_intern(t, s, strlen(s), &id), 0);
  return id;
}

static void test_ids_dense_and_stable(void **state) {
  symtab *t = symtab_new(8);
  assert_int_equal(symtab_count(t), 0);
  assert_int_equal(intern(t, "AAPL"), 0);
  assert_int_equal(intern(t, "MSFT"), 1);
  assert_int_equal(intern(t, "AAPL"), 0);   /* the same symbol, the same id */
  assert_int_equal(intern(t, "BRK.B"), 2);
  assert_int_equal(symtab_count(t), 3);
  assert_int_equal(intern(t, "MSFT"), 1);
  symtab_stats st;
  symtab_get_stats(t, &st);
  assert_int_equal(st.symbols, 3);
  assert_int_equal(st.rejected, 0);
  symtab_free(t);
}

static void test_lookup(void **state) {
  symtab *t = symtab_new(8);
  uint32_t a = intern(t, "AAPL");
  /* find never adds */
  assert_int_equal(symtab_find(t, "MSFT", 4), SYMTAB_NONE);
  assert_int_equal(symtab_count(t), 1);
  assert_int_equal(symtab_find(t, "AAPL", 4), a);
  /* by (ptr, len): a prefix or a longer string is another symbol */
  assert_int_equal(symtab_find(t, "AAPLX", 4), a);
  assert_int_equal(symtab_find(t, "AAP", 3), SYMTAB_NONE);
  assert_int_equal(symtab_find(t, "", 0), SYMTAB_NONE);
  assert_string_equal(symtab_name(t, a), "AAPL");
  assert_int_equal(symtab_len(t, a), 4);
  /* the longest symbol fits, one byte more is not a symbol */
  char longest[TD_SYMBOL_MAX + 2];
  memset(longest, 'Z', sizeof(longest));
  uint32_t id;
  assert_int_equal(symtab_intern(t, longest, TD_SYMBOL_MAX, &id), 0);
  assert_int_equal(symtab_len(t, id), TD_SYMBOL_MAX);
  assert_int_equal(strlen(symtab_name(t, id)), TD_SYMBOL_MAX);
  assert_int_equal(symtab_intern(t, longest, TD_SYMBOL_MAX + 1, &id), -EINVAL);
  assert_int_equal(symtab_find(t, longest, TD_SYMBOL_MAX + 1), SYMTAB_NONE);
  symtab_free(t);
}

static void test_invalid_symbols(void **state) {
  symtab *t = symtab_new(8);
  uint32_t id = 7;
  assert_int_equal(symtab_intern(t, "", 0, &id), -EINVAL);
  assert_int_equal(symtab_intern(t, "a b", 3, &id), -EINVAL);
  assert_int_equal(symtab_intern(t, "A\"B", 3, &id), -EINVAL);
  assert_int_equal(id, 7);   /* untouched on failure */
  assert_int_equal(symtab_count(t), 0);
  symtab_free(t);
}

static void test_limit(void **state) {
  symtab *t = symtab_new(3);
  assert_int_equal(symtab_max(t), 3);
  const char *names[] = {"A", "B", "C"};
  for (int i = 0; i < 3; i++) assert_int_equal(intern(t, names[i]), (uint32_t)i);
  uint32_t id = SYMTAB_NONE;
  assert_int_equal(symtab_intern(t, "D", 1, &id), -ENOSPC);
  assert_int_equal(symtab_intern(t, "E", 1, &id), -ENOSPC);
  assert_int_equal(id, SYMTAB_NONE);
  /* known symbols keep their ids when the table is full */
  assert_int_equal(intern(t, "B"), 1);
  assert_int_equal(symtab_find(t, "D", 1), SYMTAB_NONE);
  symtab_stats st;
  symtab_get_stats(t, &st);
  assert_int_equal(st.symbols, 3);
  assert_int_equal(st.rejected, 2);
  assert_null(symtab_new(0));
  symtab_free(t);
}

/* Names are handed out (the store's entries point at them): no later
 * insert may move one. The whole production limit is filled. */
static void test_many_names_stay_put(void **state) {
  symtab *t = symtab_new(TD_MAX_SYMBOLS);
  const char *first = symtab_name(t, intern(t, "S0"));
  char s[16];
  for (uint32_t i = 1; i < TD_MAX_SYMBOLS; i++) {
    int n = snprintf(s, sizeof(s), "S%u", i);
    uint32_t id;
    assert_int_equal(symtab_intern(t, s, (size_t)n, &id), 0);
    assert_int_equal(id, i);
  }
  assert_ptr_equal(symtab_name(t, 0), first);
  assert_string_equal(first, "S0");
  for (uint32_t i = 0; i < TD_MAX_SYMBOLS; i += 97) {
    int n = snprintf(s, sizeof(s), "S%u", i);
    assert_int_equal(symtab_find(t, s, (size_t)n), i);
    assert_string_equal(symtab_name(t, i), s);
  }
  uint32_t id;
  assert_int_equal(symtab_intern(t, "ONE.MORE", 8, &id), -ENOSPC);
  symtab_free(t);
}

/* The store's table is the process's: an id interned through it indexes
 * the store, and the store's by-name and by-id calls agree. */
static void test_store_shares_ids(void **state) {
  qstore *qs = qstore_new(4, 1000, 2);
  symtab *t = qstore_symtab(qs);
  uint32_t id;
  assert_int_equal(qstore_intern(qs, "MSFT", 4, &id), 0);
  assert_int_equal(symtab_find(t, "MSFT", 4), id);
  assert_int_equal(qstore_next_seq_id(qs, SMSG_QUOTE, id), 1);
  assert_int_equal(qstore_next_seq(qs, SMSG_QUOTE, "MSFT", 4), 2);
  assert_int_equal(qstore_next_seq_id(qs, SMSG_QUOTE, 5), 0);   /* never given */
  td_buf *b = buf_from("x", 1);
  assert_int_equal(qstore_insert_id(qs, SMSG_QUOTE, id, b, 1, 1, 0), QSTORE_INSERTED);
  assert_int_equal(qstore_insert_id(qs, SMSG_QUOTE, 9, b, 1, 2, 0), -EINVAL);
  buf_unref(b);
  qstore_entry e;
  assert_true(qstore_latest(qs, SMSG_QUOTE, "MSFT", 4, &e));
  assert_int_equal(e.id, id);
  assert_string_equal(e.symbol, "MSFT");
  assert_int_equal(qstore_intern(qs, "AAPL", 4, &id), 0);
  assert_int_equal(qstore_intern(qs, "GOOG", 4, &id), -ENOSPC);
  qstore_stats st;
  qstore_get_stats(qs, &st);
  assert_int_equal(st.rejected_symbols, 1);
  assert_int_equal(st.symbols, 1);   /* AAPL has an id but nothing stored */
  qstore_free(qs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_ids_dense_and_stable),
    cmocka_unit_test(test_lookup),
    cmocka_unit_test(test_invalid_symbols),
    cmocka_unit_test(test_limit),
    cmocka_unit_test(test_many_names_stay_put),
    cmocka_unit_test(test_store_shares_ids),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
