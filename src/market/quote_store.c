/* Quote store: per symbol id (the store's symtab) one series per kind,
 * created on first use. A series is a ring
 * of positions and payload references in insertion order, so ordinals grow
 * along each ring and replay can binary-search and merge rings. */
#include "market/quote_store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/hex.h"

typedef struct {
  td_buf *payload;
  uint64_t epoch, seq, ordinal, recv_ms;
} qs_slot;

typedef struct qs_series {
  qs_slot *ring;
  uint32_t cap, head, count;
  uint64_t next_seq;
  qs_slot latest;            /* payload holds its own reference */
  struct {
    uint64_t epoch, seq, used;
  } epochs[QSTORE_EPOCHS];
  uint32_t id;               /* the symbol's, in the store's symtab */
  smsg_kind kind;
} qs_series;

/* A symbol's series, one per kind, made on first use. */
typedef struct {
  qs_series *series[SMSG_KIND_COUNT];
} qs_symbol;

struct qstore {
  size_t history_size;
  uint64_t history_ms;
  uint64_t epoch;
  char epoch_hex[SMSG_EPOCH_LEN + 1];
  uint64_t ordinal;
  symtab *syms;              /* the process's symbol table, owned here */
  qs_symbol *by_id;          /* by_id[id], symtab_max of them */
  uint32_t *order;           /* ids with a series, first-stored order */
  uint32_t norder;
  qstore_stats st;
};

/* ---- epoch ---------------------------------------------------------------- */


void qstore_epoch_format(uint64_t epoch, char out[SMSG_EPOCH_LEN + 1]) {
  for (int i = SMSG_EPOCH_LEN - 1; i >= 0; i--, epoch >>= 4) out[i] = HEX_DIGITS[epoch & 15];
  out[SMSG_EPOCH_LEN] = 0;
}

int qstore_epoch_parse(const char *s, size_t n, uint64_t *epoch) {
  if (n != SMSG_EPOCH_LEN) return -EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return -EINVAL;
    v = v << 4 | (uint64_t)d;
  }
  *epoch = v;
  return 0;
}

uint64_t qstore_epoch(const qstore *qs) { return qs->epoch; }
const char *qstore_epoch_hex(const qstore *qs) { return qs->epoch_hex; }

/* ---- lifecycle ------------------------------------------------------------ */

qstore *qstore_new(size_t history_size, uint64_t history_ms, size_t max_symbols) {
  if (history_size == 0 || history_size > UINT32_MAX / 2 || max_symbols == 0 ||
      max_symbols > UINT32_MAX / 4)
    return NULL;
  qstore *qs = calloc(1, sizeof(*qs));
  if (!qs) return NULL;
  if (getrandom(&qs->epoch, sizeof(qs->epoch), 0) != (ssize_t)sizeof(qs->epoch)) {
    free(qs);
    return NULL;
  }
  qstore_epoch_format(qs->epoch, qs->epoch_hex);
  qs->history_size = history_size;
  qs->history_ms = history_ms;
  qs->syms = symtab_new((uint32_t)max_symbols);
  qs->by_id = calloc(max_symbols, sizeof(*qs->by_id));
  qs->order = calloc(max_symbols, sizeof(*qs->order));
  if (!qs->syms || !qs->by_id || !qs->order) {
    qstore_free(qs);
    return NULL;
  }
  return qs;
}

symtab *qstore_symtab(const qstore *qs) { return qs->syms; }

static void series_free(qs_series *s) {
  if (!s) return;
  for (uint32_t i = 0; i < s->count; i++) buf_unref(s->ring[(s->head + i) % s->cap].payload);
  buf_unref(s->latest.payload);
  free(s->ring);
  free(s);
}

void qstore_free(qstore *qs) {
  if (!qs) return;
  for (uint32_t i = 0; i < qs->norder; i++)
    for (int k = 0; k < SMSG_KIND_COUNT; k++) series_free(qs->by_id[qs->order[i]].series[k]);
  free(qs->order);
  free(qs->by_id);
  symtab_free(qs->syms);
  free(qs);
}

/* ---- series by symbol id -------------------------------------------------- */

static bool id_valid(const qstore *qs, smsg_kind kind, uint32_t id) {
  return (unsigned)kind < SMSG_KIND_COUNT && id < symtab_count(qs->syms);
}

static qs_series *series_get(qstore *qs, smsg_kind kind, uint32_t id) {
  qs_symbol *y = &qs->by_id[id];
  if (y->series[kind]) return y->series[kind];
  qs_series *se = calloc(1, sizeof(*se));
  if (!se) return NULL;
  se->id = id;
  se->kind = kind;
  bool first = true;   /* the symbol's first series puts it in the order */
  for (int k = 0; k < SMSG_KIND_COUNT; k++) first = first && !y->series[k];
  if (first) qs->order[qs->norder++] = id;
  qs->st.symbols = qs->norder;
  y->series[kind] = se;
  return se;
}

static const qs_series *series_find(const qstore *qs, smsg_kind kind, uint32_t id) {
  return id_valid(qs, kind, id) ? qs->by_id[id].series[kind] : NULL;
}

/* The id of a symbol named by its bytes (the by-name calls below), added
 * when new: -EINVAL or -ENOSPC (counted) as symtab_intern says. */
static int name_id(qstore *qs, const char *s, size_t n, uint32_t *id) {
  int rc = symtab_intern(qs->syms, s, n, id);
  if (rc == -ENOSPC) qs->st.rejected_symbols++;
  return rc;
}

static uint32_t name_find(const qstore *qs, const char *s, size_t n) { return symtab_find(qs->syms, s, n); }

/* ---- rings ----------------------------------------------------------------- */

static qs_slot *ring_at(const qs_series *s, uint32_t i) { return &s->ring[(s->head + i) % s->cap]; }

static bool aged(const qstore *qs, const qs_slot *e, uint64_t now_ms) {
  return now_ms > e->recv_ms && now_ms - e->recv_ms > qs->history_ms;
}

static void ring_pop(qstore *qs, qs_series *s) {
  buf_unref(s->ring[s->head].payload);
  s->head = (s->head + 1) % s->cap;
  s->count--;
  qs->st.entries--;
}

/* Room for one more entry: grow toward history_size, else drop the oldest. */
static int ring_make_room(qstore *qs, qs_series *s) {
  if (s->count < s->cap) return 0;
  if (s->cap >= qs->history_size) {
    ring_pop(qs, s);
    return 0;
  }
  size_t cap = s->cap ? (size_t)s->cap * 2 : QSTORE_RING_MIN;
  if (cap > qs->history_size) cap = qs->history_size;
  qs_slot *r = malloc(cap * sizeof(*r));
  if (!r) return -ENOMEM;
  for (uint32_t i = 0; i < s->count; i++) r[i] = *ring_at(s, i);
  free(s->ring);
  s->ring = r;
  s->cap = (uint32_t)cap;
  s->head = 0;
  return 0;
}

static void prune(qstore *qs, qs_series *s, uint64_t now_ms) {
  while (s->count && aged(qs, &s->ring[s->head], now_ms)) {
    ring_pop(qs, s);
    qs->st.expired++;
  }
  if (!s->count && s->ring) {   /* a quiet symbol gives its ring back */
    free(s->ring);
    s->ring = NULL;
    s->cap = s->head = 0;
  }
}

/* ---- duplicates --------------------------------------------------------- */

/* true when (epoch, seq) is not newer than what this series saw of that
 * epoch; otherwise records it. */
static bool seen(qs_series *s, uint64_t epoch, uint64_t seq, uint64_t tick) {
  int victim = 0;
  for (int i = 0; i < QSTORE_EPOCHS; i++) {
    if (s->epochs[i].used && s->epochs[i].epoch == epoch) {
      if (seq <= s->epochs[i].seq) return true;
      s->epochs[i].seq = seq;
      s->epochs[i].used = tick;
      return false;
    }
    if (s->epochs[i].used < s->epochs[victim].used) victim = i;
  }
  s->epochs[victim].epoch = epoch;
  s->epochs[victim].seq = seq;
  s->epochs[victim].used = tick;
  return false;
}

/* ---- the latest entry ------------------------------------------------------ */

/* Within one epoch seq orders messages (and seen() drops older ones). Seqs
 * of two epochs (two publishers of a symbol, or one restarted) cannot be
 * compared: then the quote's own time "t" says which is the latest. A
 * message of another epoch that is older than the latest (one in flight
 * from a stopped publisher, or replayed by another producer) goes into the
 * history, where recovery finds it, but is not the latest quote. A message
 * without a position (another producer's) has no seq to compare: "t"
 * decides for it too, even against another such message. Payloads without
 * a readable "t" replace the latest as they arrive. */
static bool older_than_latest(const qs_series *s, const td_buf *payload, uint64_t epoch, uint64_t seq) {
  if (!s->latest.payload) return false;
  if (s->latest.epoch == epoch && seq != QSTORE_NO_POSITION && s->latest.seq != QSTORE_NO_POSITION) return false;
  int64_t a, b;
  uint32_t an, bn;
  if (smsg_payload_time(payload->data, payload->len, &a, &an) != 0 ||
      smsg_payload_time(s->latest.payload->data, s->latest.payload->len, &b, &bn) != 0)
    return false;
  return a < b || (a == b && an < bn);
}

/* ---- public operations ------------------------------------------------------ */

int qstore_intern(qstore *qs, const char *sym, size_t n, uint32_t *id) { return name_id(qs, sym, n, id); }

uint64_t qstore_next_seq_id(qstore *qs, smsg_kind kind, uint32_t id) {
  qs_series *s = id_valid(qs, kind, id) ? series_get(qs, kind, id) : NULL;
  return s ? ++s->next_seq : 0;
}

uint64_t qstore_next_seq(qstore *qs, smsg_kind kind, const char *sym, size_t n) {
  uint32_t id;
  if ((unsigned)kind >= SMSG_KIND_COUNT || name_id(qs, sym, n, &id) < 0) return 0;
  return qstore_next_seq_id(qs, kind, id);
}

int qstore_insert_id(qstore *qs, smsg_kind kind, uint32_t id, td_buf *payload, uint64_t epoch, uint64_t seq,
                     uint64_t recv_ms) {
  if (!id_valid(qs, kind, id)) return -EINVAL;
  qs_series *s = series_get(qs, kind, id);
  if (!s) return -ENOMEM;
  /* seq 0 is no position (another producer's message): nothing to compare,
   * so never a duplicate. */
  if (seq != QSTORE_NO_POSITION && seen(s, epoch, seq, qs->ordinal + 1)) {
    qs->st.duplicates++;
    return QSTORE_DUPLICATE;
  }
  prune(qs, s, recv_ms);
  if (ring_make_room(qs, s) < 0) return -ENOMEM;
  qs_slot e = {buf_ref(payload), epoch, seq, ++qs->ordinal, recv_ms};
  s->ring[(s->head + s->count) % s->cap] = e;
  s->count++;
  if (!older_than_latest(s, payload, epoch, seq)) {
    buf_unref(s->latest.payload);
    s->latest = e;
    buf_ref(payload);
  }
  qs->st.inserts++;
  qs->st.entries++;
  /* A full ring pops its oldest entry when this series takes its next
   * quote, and that entry and its payload were written a whole ring of
   * quotes ago: out of cache. Fetching them now hides the misses behind the
   * other symbols' quotes that come in between (prune was 5 % of tickerd's
   * samples under POST /quotes load with 50 symbols). The oldest slot was
   * fetched by the previous insert, so reading its payload pointer does not
   * wait; the slot after it is fetched for the next insert. */
  if (s->count == s->cap) {
    uint32_t next = s->head + 1 == s->cap ? 0 : s->head + 1;
    __builtin_prefetch(s->ring[s->head].payload);
    __builtin_prefetch(&s->ring[next]);
  }
  return QSTORE_INSERTED;
}

int qstore_insert(qstore *qs, smsg_kind kind, const char *sym, size_t n, td_buf *payload,
                  uint64_t epoch, uint64_t seq, uint64_t recv_ms) {
  uint32_t id;
  if ((unsigned)kind >= SMSG_KIND_COUNT) return -EINVAL;
  int rc = name_id(qs, sym, n, &id);
  return rc < 0 ? rc : qstore_insert_id(qs, kind, id, payload, epoch, seq, recv_ms);
}

static void entry_out(const qstore *qs, const qs_series *s, const qs_slot *e, qstore_entry *out) {
  out->payload = e->payload;
  out->epoch = e->epoch;
  out->seq = e->seq;
  out->ordinal = e->ordinal;
  out->recv_ms = e->recv_ms;
  out->symbol = symtab_name(qs->syms, s->id);
  out->id = s->id;
  out->kind = s->kind;
}

bool qstore_latest_id(const qstore *qs, smsg_kind kind, uint32_t id, qstore_entry *out) {
  const qs_series *s = series_find(qs, kind, id);
  if (!s || !s->latest.payload) return false;
  entry_out(qs, s, &s->latest, out);
  return true;
}

bool qstore_latest(const qstore *qs, smsg_kind kind, const char *sym, size_t n, qstore_entry *out) {
  return qstore_latest_id(qs, kind, name_find(qs, sym, n), out);
}

size_t qstore_history_id(const qstore *qs, smsg_kind kind, uint32_t id, size_t limit, uint64_t now_ms,
                         qstore_entry *out) {
  const qs_series *s = series_find(qs, kind, id);
  if (!s || !limit) return 0;
  uint32_t first = s->count;   /* walk back from the newest while young */
  while (first > 0 && s->count - first < limit && !aged(qs, ring_at(s, first - 1), now_ms)) first--;
  for (uint32_t i = first; i < s->count; i++) entry_out(qs, s, ring_at(s, i), &out[i - first]);
  return s->count - first;
}

size_t qstore_history(const qstore *qs, smsg_kind kind, const char *sym, size_t n, size_t limit,
                      uint64_t now_ms, qstore_entry *out) {
  return qstore_history_id(qs, kind, name_find(qs, sym, n), limit, now_ms, out);
}

size_t qstore_symbols(const qstore *qs, smsg_kind kind, const char **out, size_t max) {
  if ((unsigned)kind >= SMSG_KIND_COUNT) return 0;
  size_t total = 0;
  for (uint32_t i = 0; i < qs->norder; i++) {
    const qs_series *s = qs->by_id[qs->order[i]].series[kind];
    if (!s || !s->latest.payload) continue;
    if (total < max) out[total] = symtab_name(qs->syms, s->id);
    total++;
  }
  return total;
}

uint64_t qstore_find_id(const qstore *qs, smsg_kind kind, uint32_t id, uint64_t epoch, uint64_t seq) {
  const qs_series *s = series_find(qs, kind, id);
  if (!s || seq == QSTORE_NO_POSITION) return 0;   /* nobody resumes from a message without a position */
  /* Age does not matter here: a client that has the latest entry of a quiet
   * symbol has missed nothing of it. */
  if (s->latest.payload && s->latest.epoch == epoch && s->latest.seq == seq) return s->latest.ordinal;
  for (uint32_t i = s->count; i > 0; i--) {
    const qs_slot *e = ring_at(s, i - 1);
    if (e->epoch == epoch && e->seq == seq) return e->ordinal;
  }
  return 0;
}

uint64_t qstore_find(const qstore *qs, smsg_kind kind, const char *sym, size_t n, uint64_t epoch,
                     uint64_t seq) {
  return qstore_find_id(qs, kind, name_find(qs, sym, n), epoch, seq);
}

void qstore_expire(qstore *qs, uint64_t now_ms) {
  for (uint32_t i = 0; i < qs->norder; i++)
    for (int k = 0; k < SMSG_KIND_COUNT; k++)
      if (qs->by_id[qs->order[i]].series[k]) prune(qs, qs->by_id[qs->order[i]].series[k], now_ms);
}

void qstore_get_stats(const qstore *qs, qstore_stats *out) { *out = qs->st; }

/* ---- replay iterator ------------------------------------------------------- */

/* A ring and the ordinal of the next entry wanted from it. The ring may
 * change between calls, so the position is found again by ordinal. */
struct qstore_iter_node {
  const qs_series *s;
  uint64_t next;
};

/* Index of the first entry with ordinal >= ord (count when none). */
static uint32_t ring_lower_bound(const qs_series *s, uint64_t ord) {
  uint32_t lo = 0, hi = s->count;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (ring_at(s, mid)->ordinal < ord)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void heap_swap(struct qstore_iter_node *h, size_t a, size_t b) {
  struct qstore_iter_node t = h[a];
  h[a] = h[b];
  h[b] = t;
}

static void heap_push(qstore_iter *it, const qs_series *s, uint64_t next) {
  struct qstore_iter_node *h = it->heap;
  size_t i = it->n++;
  h[i].s = s;
  h[i].next = next;
  while (i && h[(i - 1) / 2].next > h[i].next) {
    heap_swap(h, i, (i - 1) / 2);
    i = (i - 1) / 2;
  }
}

static struct qstore_iter_node heap_pop(qstore_iter *it) {
  struct qstore_iter_node *h = it->heap, top = h[0];
  h[0] = h[--it->n];
  for (size_t i = 0;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < it->n && h[l].next < h[m].next) m = l;
    if (r < it->n && h[r].next < h[m].next) m = r;
    if (m == i) break;
    heap_swap(h, i, m);
    i = m;
  }
  return top;
}

/* Pushes the series' first young entry with ordinal >= from, if any. */
static void iter_seek(qstore_iter *it, const qs_series *s, uint64_t from) {
  for (uint32_t i = ring_lower_bound(s, from); i < s->count; i++) {
    const qs_slot *e = ring_at(s, i);
    if (e->ordinal > it->until) return;
    if (!aged(it->qs, e, it->now_ms)) {
      heap_push(it, s, e->ordinal);
      return;
    }
  }
}

int qstore_iter_init_ids(qstore_iter *it, const qstore *qs, smsg_kind kind, const uint32_t *ids, size_t nsyms,
                         uint64_t after, uint64_t now_ms) {
  memset(it, 0, sizeof(*it));
  it->qs = qs;
  it->until = qs->ordinal;
  it->now_ms = now_ms;
  if (!nsyms) return 0;
  it->heap = malloc(nsyms * sizeof(*it->heap));
  if (!it->heap) return -ENOMEM;
  for (size_t i = 0; i < nsyms; i++) {
    const qs_series *s = series_find(qs, kind, ids[i]);
    bool dup = false;   /* a symbol listed twice is replayed once */
    for (size_t j = 0; s && j < it->n && !dup; j++) dup = it->heap[j].s == s;
    if (s && !dup) iter_seek(it, s, after + 1);
  }
  return 0;
}

int qstore_iter_init(qstore_iter *it, const qstore *qs, smsg_kind kind, const char *const *syms,
                     size_t nsyms, uint64_t after, uint64_t now_ms) {
  uint32_t *ids = malloc((nsyms ? nsyms : 1) * sizeof(*ids));
  if (!ids) return -ENOMEM;
  for (size_t i = 0; i < nsyms; i++) ids[i] = name_find(qs, syms[i], strlen(syms[i]));
  int rc = qstore_iter_init_ids(it, qs, kind, ids, nsyms, after, now_ms);
  free(ids);
  return rc;
}

bool qstore_iter_next(qstore_iter *it, qstore_entry *out) {
  while (it->n) {
    struct qstore_iter_node top = heap_pop(it);
    uint32_t i = ring_lower_bound(top.s, top.next);
    if (i == top.s->count) continue;   /* expired meanwhile */
    const qs_slot *e = ring_at(top.s, i);
    if (e->ordinal > it->until) continue;
    entry_out(it->qs, top.s, e, out);
    iter_seek(it, top.s, e->ordinal + 1);
    return true;
  }
  return false;
}

void qstore_iter_free(qstore_iter *it) {
  free(it->heap);
  it->heap = NULL;
  it->n = 0;
}
