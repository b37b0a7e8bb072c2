/* The in-memory quote store: per (kind, symbol) the latest payload and a ring
 * of recent ones, for GET /quotes, WebSocket "history" and the recovery of a
 * reconnecting client ("since").
 *
 * It is fed from two places: the messages this process publishes (the
 * pipeline) and the messages of other instances and producers received from
 * Redis (the hub, which does not store this process's own messages again).
 * Each entry carries its stream position (epoch, seq); an insert that is not
 * newer than the last one stored for the same epoch is a duplicate and
 * ignored, so a message delivered twice is stored once. Every stored entry gets a
 * store-wide ordinal, increasing by insertion, which orders replay across
 * symbols.
 *
 * Symbols: the store owns the process's symbol table (symtab.h); the other
 * modules borrow it through qstore_symtab() and index their own per-symbol
 * state by its ids. Each operation comes in two forms: by id (the message
 * paths, which interned the symbol where it entered) and by name (requests
 * and tests, which look the id up).
 *
 * Payloads are td_bufs shared with the streaming code: the store holds one
 * reference per entry and never copies the bytes.
 *
 * Times are milliseconds of one clock chosen by the caller (the loop's
 * uv_now()), the same for inserts and queries. Entries older than
 * history_ms are not returned and are freed by qstore_expire(). */
#ifndef TD_QUOTE_STORE_H
#define TD_QUOTE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "stream_msg.h"
#include "symtab.h"

/* Epochs remembered per series for duplicate detection. Two publishers of
 * one symbol (two tickerd instances, or one restarted) is the common case;
 * four leaves room for a rolling restart. An epoch pushed out of this table
 * is treated as new again, so at worst a very old message is stored twice. */
#define QSTORE_EPOCHS 4
/* A ring starts this small and doubles up to history_size: most of up to
 * TD_MAX_SYMBOLS symbols are quiet, and should not cost a full ring each. */
#define QSTORE_RING_MIN 16

typedef struct qstore qstore;

/* An entry as queries return it. `payload` is borrowed from the store: take
 * buf_ref() to keep it past the next insert or expire. `symbol` lives as long
 * as the store. */
typedef struct qstore_entry {
  td_buf *payload;
  uint64_t epoch;
  uint64_t seq;
  uint64_t ordinal;
  uint64_t recv_ms;
  const char *symbol;
  uint32_t id;               /* the symbol's id */
  smsg_kind kind;
} qstore_entry;

typedef struct qstore_stats {
  uint64_t symbols;            /* distinct symbols stored (or given a seq) */
  uint64_t rejected_symbols;   /* inserts/next_seq/qstore_intern refused: the symbol limit reached */
  uint64_t inserts;            /* entries stored */
  uint64_t duplicates;         /* inserts ignored as not newer */
  uint64_t entries;            /* entries held in rings now */
  uint64_t expired;            /* entries dropped by age */
} qstore_stats;

enum { QSTORE_DUPLICATE = 0, QSTORE_INSERTED = 1 };

/* The seq of an entry without a position: a message another producer
 * published without "seq"/"epoch". Positions start at 1. */
#define QSTORE_NO_POSITION 0

/* history_size >= 1 entries per series, kept at most history_ms; at most
 * max_symbols distinct symbols. Draws the process epoch from getrandom().
 * NULL on OOM or when no random bytes are available. */
qstore *qstore_new(size_t history_size, uint64_t history_ms, size_t max_symbols);
void qstore_free(qstore *qs);

/* The symbol table, owned by the store (lives as long as it). */
symtab *qstore_symtab(const qstore *qs);
/* symtab_intern, with a refusal at the limit counted in rejected_symbols. */
int qstore_intern(qstore *qs, const char *sym, size_t n, uint32_t *id);

/* This process's epoch, as a number and as SMSG_EPOCH_LEN lowercase hex. */
uint64_t qstore_epoch(const qstore *qs);
const char *qstore_epoch_hex(const qstore *qs);
void qstore_epoch_format(uint64_t epoch, char out[SMSG_EPOCH_LEN + 1]);
/* 0, or -EINVAL unless s[0..n) is exactly 16 lowercase hex characters. */
int qstore_epoch_parse(const char *s, size_t n, uint64_t *epoch);

/* The next sequence number to publish for (kind, symbol): 1, 2, 3 ...
 * 0 when the symbol is invalid or the symbol limit is reached. */
uint64_t qstore_next_seq(qstore *qs, smsg_kind kind, const char *sym, size_t n);
/* The same for a symbol id; 0 for an id the table never gave. */
uint64_t qstore_next_seq_id(qstore *qs, smsg_kind kind, uint32_t id);

/* Stores `payload` (taking its own reference) at position (epoch, seq).
 * seq QSTORE_NO_POSITION (with epoch 0) stores it without a position: never
 * a duplicate, never found by qstore_find, latest by the same rule as the
 * rest (epoch 0 is another epoch than every publisher's).
 * Returns QSTORE_INSERTED, QSTORE_DUPLICATE, -EINVAL (bad symbol or kind),
 * -ENOSPC (symbol limit) or -ENOMEM. */
int qstore_insert(qstore *qs, smsg_kind kind, const char *sym, size_t n, td_buf *payload,
                  uint64_t epoch, uint64_t seq, uint64_t recv_ms);
/* The same for a symbol id (-EINVAL for an id the table never gave). */
int qstore_insert_id(qstore *qs, smsg_kind kind, uint32_t id, td_buf *payload, uint64_t epoch, uint64_t seq,
                     uint64_t recv_ms);

/* The latest payload of (kind, symbol), however old. false when none. */
bool qstore_latest(const qstore *qs, smsg_kind kind, const char *sym, size_t n, qstore_entry *out);
bool qstore_latest_id(const qstore *qs, smsg_kind kind, uint32_t id, qstore_entry *out);

/* Up to `limit` most recent entries younger than history_ms, oldest first,
 * into out[0..limit). Returns how many. */
size_t qstore_history(const qstore *qs, smsg_kind kind, const char *sym, size_t n, size_t limit,
                      uint64_t now_ms, qstore_entry *out);
size_t qstore_history_id(const qstore *qs, smsg_kind kind, uint32_t id, size_t limit, uint64_t now_ms,
                         qstore_entry *out);

/* Symbols that have a latest entry of `kind`, in first-seen order, into
 * out[0..max). Returns how many there are in all (may exceed max). */
size_t qstore_symbols(const qstore *qs, smsg_kind kind, const char **out, size_t max);

/* The ordinal of the entry at (epoch, seq) of (kind, symbol), or 0 when the
 * store no longer (or never) held it, or seq is QSTORE_NO_POSITION. */
uint64_t qstore_find(const qstore *qs, smsg_kind kind, const char *sym, size_t n, uint64_t epoch,
                     uint64_t seq);
uint64_t qstore_find_id(const qstore *qs, smsg_kind kind, uint32_t id, uint64_t epoch, uint64_t seq);

/* Frees entries older than history_ms (call from a timer). */
void qstore_expire(qstore *qs, uint64_t now_ms);

void qstore_get_stats(const qstore *qs, qstore_stats *out);

/* Replay: the entries of a set of symbols of one kind with ordinal > after,
 * younger than history_ms, in ordinal order (a merge of the rings). Entries
 * stored after qstore_iter_init are not returned. The iterator stays valid
 * across inserts and expiry; the store must outlive it. */
typedef struct qstore_iter {
  const qstore *qs;
  uint64_t until;            /* last ordinal at init */
  uint64_t now_ms;
  size_t n;                  /* heap size */
  struct qstore_iter_node *heap;
} qstore_iter;

/* 0 or -ENOMEM. Unknown symbols are ignored. */
int qstore_iter_init(qstore_iter *it, const qstore *qs, smsg_kind kind, const char *const *syms,
                     size_t nsyms, uint64_t after, uint64_t now_ms);
/* The same over symbol ids (ids the table never gave are ignored). */
int qstore_iter_init_ids(qstore_iter *it, const qstore *qs, smsg_kind kind, const uint32_t *ids, size_t nsyms,
                         uint64_t after, uint64_t now_ms);
bool qstore_iter_next(qstore_iter *it, qstore_entry *out);
void qstore_iter_free(qstore_iter *it);

#endif
