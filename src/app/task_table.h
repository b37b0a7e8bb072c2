/* The task id table: 16-byte random ids to tasks, open addressing with
 * linear probing, grown by doubling with an incremental rehash.
 *
 * With a million tasks the table has 2-4 million slots; rehashing them all
 * in one insert stalled the loop for tens of milliseconds (the /hello p99
 * of the bench). After a doubling the old array is kept and moved into the
 * new one a few probe clusters per insert or remove, so no single call
 * moves more than TTAB_MIGRATE_STEP slots' worth (plus the end of a
 * cluster). Lookups and removals look in the new array, then in the old
 * one. A whole cluster moves at once, so the clusters left in the old
 * array stay intact and their probe chains unbroken.
 *
 * Entries are pointers to objects whose first 16 bytes are their id. */
#ifndef TD_TASK_TABLE_H
#define TD_TASK_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TTAB_ID_LEN 16
/* Slots of the old array looked at per insert or remove while migrating.
 * The next doubling is 0.75 x cap inserts away and migration takes at most
 * cap / 2 / TTAB_MIGRATE_STEP of them: always done well before. */
#define TTAB_MIGRATE_STEP 64

typedef struct ttab_array {
  void **slot;
  size_t cap;  /* a power of two */
  size_t used;
} ttab_array;

typedef struct ttab {
  ttab_array cur;      /* inserts go here */
  ttab_array old;      /* being moved into cur; slot NULL when not migrating */
  size_t migrate_at;   /* next slot of old to look at */
  size_t migrate_left; /* slots of old not looked at yet */
} ttab;

/* An empty table of `cap` slots (a power of two). 0, or -1 on OOM. */
int ttab_init(ttab *t, size_t cap);
/* Frees the arrays, not the entries. */
void ttab_release(ttab *t);
/* Adds an entry whose id is not in the table. 0, or -1 on OOM. */
int ttab_insert(ttab *t, void *entry);
void *ttab_find(const ttab *t, const uint8_t id[TTAB_ID_LEN]);
/* Removes the entry with this id, if there is one. */
void ttab_remove(ttab *t, const uint8_t id[TTAB_ID_LEN]);
size_t ttab_count(const ttab *t);
bool ttab_migrating(const ttab *t);
/* Calls fn on every entry (for freeing them at exit). */
void ttab_each(ttab *t, void (*fn)(void *entry));

#endif
