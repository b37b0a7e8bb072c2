/* The task id table with incremental rehash (see task_table.h). */
#include "task_table.h"

#include <stdlib.h>
#include <string.h>

/* ---- one array: linear probing ------------------------------------------------ */

static size_t home_of(const ttab_array *a, const uint8_t *id) {
  uint64_t h;
  memcpy(&h, id, sizeof(h)); /* ids are random: their bytes are a fine hash */
  return (size_t)(h & (a->cap - 1));
}

static const uint8_t *id_of(const void *entry) { return entry; }

static void array_put(ttab_array *a, void *entry) {
  size_t i = home_of(a, id_of(entry));
  while (a->slot[i]) i = (i + 1) & (a->cap - 1);
  a->slot[i] = entry;
  a->used++;
}

static size_t array_find(const ttab_array *a, const uint8_t *id) {
  if (!a->slot) return SIZE_MAX;
  size_t i = home_of(a, id);
  while (a->slot[i]) {
    if (!memcmp(id_of(a->slot[i]), id, TTAB_ID_LEN)) return i;
    i = (i + 1) & (a->cap - 1);
  }
  return SIZE_MAX;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. It
 * only moves entries within the slot's own cluster, so the old array's
 * other clusters, and where migration stands, are untouched. */
static void array_delete_at(ttab_array *a, size_t i) {
  size_t mask = a->cap - 1, j = i;
  a->slot[i] = NULL;
  for (;;) {
    j = (j + 1) & mask;
    if (!a->slot[j]) break;
    size_t home = home_of(a, id_of(a->slot[j]));
    /* move j back to i unless its home lies cyclically in (i, j] */
    if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
      a->slot[i] = a->slot[j];
      a->slot[j] = NULL;
      i = j;
    }
  }
  a->used--;
}

/* ---- migration ------------------------------------------------------------------ */

static void migration_done(ttab *t) {
  free(t->old.slot);
  t->old = (ttab_array){0};
  t->migrate_left = 0;
}

/* Looks at up to `budget` slots of the old array, moving each cluster met
 * whole (past the budget if need be) into the current one. */
static void migrate(ttab *t, size_t budget) {
  ttab_array *o = &t->old;
  size_t mask = o->cap - 1;
  while (o->slot && budget > 0) {
    if (!o->used || !t->migrate_left) {
      migration_done(t);
      return;
    }
    while (o->slot[t->migrate_at]) { /* a cluster: all of it */
      array_put(&t->cur, o->slot[t->migrate_at]);
      o->slot[t->migrate_at] = NULL;
      o->used--;
      t->migrate_at = (t->migrate_at + 1) & mask;
      t->migrate_left--;
      if (budget > 0) budget--;
    }
    if (budget > 0 && t->migrate_left) { /* the empty slot after it */
      t->migrate_at = (t->migrate_at + 1) & mask;
      t->migrate_left--;
      budget--;
    }
  }
  if (o->slot && (!o->used || !t->migrate_left)) migration_done(t);
}

/* Doubles: the current array becomes the old one, to be moved over. */
static int grow(ttab *t) {
  migrate(t, SIZE_MAX); /* a migration still running finishes first */
  void **slot = calloc(t->cur.cap * 2, sizeof(*slot));
  if (!slot) return -1;
  t->old = t->cur;
  t->cur = (ttab_array){slot, t->cur.cap * 2, 0};
  /* Start at an empty slot (at most 3/4 are used): every cluster then
   * lies wholly ahead of it and is met from its first slot. */
  size_t start = 0;
  while (t->old.slot[start]) start++;
  t->migrate_at = start;
  t->migrate_left = t->old.cap;
  return 0;
}

/* ---- the table ------------------------------------------------------------------- */

int ttab_init(ttab *t, size_t cap) {
  memset(t, 0, sizeof(*t));
  t->cur.slot = calloc(cap, sizeof(*t->cur.slot));
  if (!t->cur.slot) return -1;
  t->cur.cap = cap;
  return 0;
}

void ttab_release(ttab *t) {
  free(t->cur.slot);
  free(t->old.slot);
  memset(t, 0, sizeof(*t));
}

int ttab_insert(ttab *t, void *entry) {
  migrate(t, TTAB_MIGRATE_STEP);
  /* kept at most 3/4 full, counting what the old array still holds */
  if ((ttab_count(t) + 1) * 4 > t->cur.cap * 3 && grow(t) < 0) return -1;
  array_put(&t->cur, entry);
  return 0;
}

void *ttab_find(const ttab *t, const uint8_t id[TTAB_ID_LEN]) {
  size_t i = array_find(&t->cur, id);
  if (i != SIZE_MAX) return t->cur.slot[i];
  i = array_find(&t->old, id);
  return i == SIZE_MAX ? NULL : t->old.slot[i];
}

void ttab_remove(ttab *t, const uint8_t id[TTAB_ID_LEN]) {
  size_t i = array_find(&t->cur, id);
  if (i != SIZE_MAX) {
    array_delete_at(&t->cur, i);
  } else if ((i = array_find(&t->old, id)) != SIZE_MAX) {
    array_delete_at(&t->old, i);
  }
  migrate(t, TTAB_MIGRATE_STEP);
}

size_t ttab_count(const ttab *t) { return t->cur.used + t->old.used; }
bool ttab_migrating(const ttab *t) { return t->old.slot != NULL; }

void ttab_each(ttab *t, void (*fn)(void *entry)) {
  ttab_array *arrays[] = {&t->cur, &t->old};
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; arrays[k]->slot && i < arrays[k]->cap; i++)
      if (arrays[k]->slot[i]) fn(arrays[k]->slot[i]);
}
