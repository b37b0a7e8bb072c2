/* Symbol table (see symtab.h): open addressing over ids, names in one array
 * allocated for the limit at once. calloc'd pages are not touched until a
 * symbol lands in them, so a process that sees 50 symbols pays for 50, and
 * a name's address never moves (the store hands names out). */
#include "market/symtab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/fnv1a.h"
#include "base/log.h"
#include "base/td_limits.h"
#include "market/stream_msg.h"

typedef struct {
  char name[TD_SYMBOL_MAX + 1];
  uint8_t len;
} symtab_name_slot;

struct symtab {
  symtab_name_slot *names;   /* names[id], max of them */
  uint32_t *slots;           /* id + 1; 0 is empty */
  uint32_t mask;             /* nslots - 1; nslots >= 2 * max, a power of two */
  uint32_t count, max;
  symtab_stats st;
};

symtab *symtab_new(uint32_t max_symbols) {
  if (max_symbols == 0 || max_symbols > UINT32_MAX / 4) return NULL;
  symtab *t = calloc(1, sizeof(*t));
  if (!t) return NULL;
  uint32_t nslots = 64;
  while (nslots < 2 * max_symbols) nslots <<= 1;
  t->names = calloc(max_symbols, sizeof(*t->names));
  t->slots = calloc(nslots, sizeof(*t->slots));
  if (!t->names || !t->slots) {
    symtab_free(t);
    return NULL;
  }
  t->mask = nslots - 1;
  t->max = max_symbols;
  return t;
}

void symtab_free(symtab *t) {
  if (!t) return;
  free(t->names);
  free(t->slots);
  free(t);
}

/* The slot that holds s[0..n), or the empty slot where it would go. */
static uint32_t slot_of(const symtab *t, const char *s, size_t n) {
  uint32_t i = fnv1a(s, n) & t->mask;
  for (;; i = (i + 1) & t->mask) {
    uint32_t v = t->slots[i];
    if (!v) return i;
    const symtab_name_slot *y = &t->names[v - 1];
    if (y->len == n && !memcmp(y->name, s, n)) return i;
  }
}

uint32_t symtab_find(const symtab *t, const char *s, size_t n) {
  if (n == 0 || n > TD_SYMBOL_MAX) return SYMTAB_NONE;
  uint32_t v = t->slots[slot_of(t, s, n)];
  return v ? v - 1 : SYMTAB_NONE;
}

int symtab_intern(symtab *t, const char *s, size_t n, uint32_t *id) {
  if (n == 0 || n > TD_SYMBOL_MAX) return -EINVAL;
  uint32_t i = slot_of(t, s, n);
  if (t->slots[i]) {   /* a stored name was valid when it was added */
    *id = t->slots[i] - 1;
    return 0;
  }
  if (!smsg_symbol_valid(s, n)) return -EINVAL;
  if (t->count == t->max) {
    /* Counted every time, logged once: a feed of ever-new symbols would
     * otherwise write a line per message. /status shows the count. */
    if (t->st.rejected++ == 0) {
      td_logline *l = log_begin(TD_LOG_WARN, "symbol_limit_reached");
      if (l) {
        log_int(l, "max_symbols", t->max);
        log_strn(l, "symbol", s, n);
        log_end(l);
      }
    }
    return -ENOSPC;
  }
  symtab_name_slot *y = &t->names[t->count];
  memcpy(y->name, s, n);
  y->len = (uint8_t)n;
  t->slots[i] = ++t->count;
  t->st.symbols = t->count;
  *id = t->count - 1;
  return 0;
}

const char *symtab_name(const symtab *t, uint32_t id) { return t->names[id].name; }
size_t symtab_len(const symtab *t, uint32_t id) { return t->names[id].len; }
uint32_t symtab_count(const symtab *t) { return t->count; }
uint32_t symtab_max(const symtab *t) { return t->max; }
void symtab_get_stats(const symtab *t, symtab_stats *out) { *out = t->st; }
