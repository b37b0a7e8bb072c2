/* The symbol table: every market symbol ("AAPL") gets a small integer id
 * the first time it is seen, and keeps it for the life of the process.
 *
 * One table per process (app/main.c makes it), shared by the quote store,
 * the pipeline, the publisher, the subscriber and the hub: each of them
 * indexes its per-symbol state by id in a plain array, so a symbol is hashed
 * once, where its bytes enter the process (a parsed message, a channel name
 * from Redis, a client's subscribe), and never again after.
 *
 * Ids are dense, 0, 1, 2 ... in first-seen order, below symtab_max(); a
 * symbol is never removed, so an id never changes meaning. Names live as
 * long as the table. */
#ifndef TD_SYMTAB_H
#define TD_SYMTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What symtab_find answers for a symbol the table does not hold. */
#define SYMTAB_NONE UINT32_MAX

typedef struct symtab symtab;

typedef struct symtab_stats {
  uint64_t symbols;    /* ids given */
  uint64_t rejected;   /* symtab_intern refused: the limit was reached */
} symtab_stats;

/* A table of at most max_symbols (>= 1; TD_MAX_SYMBOLS in tickerd). NULL on
 * OOM or a bad limit. */
symtab *symtab_new(uint32_t max_symbols);
void symtab_free(symtab *t);

/* The id of s[0..n), or SYMTAB_NONE. Never adds. */
uint32_t symtab_find(const symtab *t, const char *s, size_t n);
/* The id of s[0..n) in *id, added when new: 0, -EINVAL (not a valid
 * symbol, smsg_symbol_valid), -ENOSPC (the limit is reached: counted in
 * `rejected`, and the first refusal is logged) or -ENOMEM. */
int symtab_intern(symtab *t, const char *s, size_t n, uint32_t *id);

/* The name of a given id, NUL-terminated, and its length. */
const char *symtab_name(const symtab *t, uint32_t id);
size_t symtab_len(const symtab *t, uint32_t id);
/* Ids given so far (every id is below it) and the most there can be. */
uint32_t symtab_count(const symtab *t);
uint32_t symtab_max(const symtab *t);
void symtab_get_stats(const symtab *t, symtab_stats *out);

#endif
