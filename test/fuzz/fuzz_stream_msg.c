/* libFuzzer: both parse modes of stream_msg on arbitrary bytes, each run
 * three times: with the fast path allowed, with it and SMSG_OPT_NUMBERS
 * (numbers' values kept while checked), and on the jansson path alone. The
 * runs must agree exactly: return values, batch error texts, stream
 * counters, the sequence of message and control callbacks (kind, index,
 * symbol, channel), the encoded payloads byte for byte, the times
 * smsg_msg_time gives and the numbers smsg_msg_number gives, bit for bit
 * (but for the sign of a zero: jansson reads the integer -0 as 0, the fast
 * tiers as strtod does, -0.0). Every payload must also
 * be JSON that jansson reads back, ending in a position
 * smsg_payload_position understands. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "market/smsg_fast.c"

#define FUZZ_EPOCH "0123456789abcdef"

/* Everything the callbacks saw, serialized, for a byte-wise comparison. */
typedef struct {
  char *data;
  size_t len, cap;
  uint64_t seq;
} trace;

static void put(trace *t, const void *p, size_t n) {
  if (t->len + n > t->cap) {
    t->cap = (t->len + n) * 2 + 256;
    t->data = realloc(t->data, t->cap);
    if (!t->data) abort();
  }
  memcpy(t->data + t->len, p, n);
  t->len += n;
}

static void put_field(trace *t, const void *p, size_t n) {
  put(t, &n, sizeof(n));
  put(t, p, n);
}

static void check_payload(const smsg_msg *m, const td_buf *b, uint64_t seq) {
  json_error_t je;
  json_t *j = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &je);
  if (!j || !json_is_object(j)) abort();
  if (!json_object_get(j, m->kind == SMSG_NEWS ? "symbols" : "S")) abort();
  json_decref(j);
  uint64_t ps, pe;
  if (smsg_payload_position(b->data, b->len, &ps, &pe) != 0 || ps != seq ||
      pe != 0x0123456789abcdefull)
    abort();
  if (!smsg_symbol_valid(m->symbol, m->symbol_len) || strlen(m->symbol) != m->symbol_len) abort();
}

static void on_msg(void *ud, const smsg_msg *m) {
  trace *t = ud;
  td_buf *b = smsg_encode(m, ++t->seq, FUZZ_EPOCH);
  if (!b) abort();
  check_payload(m, b, t->seq);
  put(t, "M", 1);
  put(t, &m->kind, sizeof(m->kind));
  put(t, &m->index, sizeof(m->index));
  put_field(t, m->symbol, m->symbol_len);
  put_field(t, m->channel, strlen(m->channel));
  put_field(t, b->data, b->len);
  buf_unref(b);
  /* the time each tier converted (the fast tiers while checking it) */
  int64_t ns = 0;
  int rc = smsg_msg_time(m, &ns);
  put(t, &rc, sizeof(rc));
  put(t, &ns, sizeof(ns));
  /* every number of the kind, kept or read again from the literal */
  const kind_spec *ks = &smsg__kinds[m->kind];
  for (int i = 0; i < ks->nfields; i++) {
    if (ks->fields[i].type != F_PRICE && ks->fields[i].type != F_UINT) continue;
    double v = 0;
    rc = smsg_msg_number(m, (smsg_field)SMSG_FIELD(m->kind, i), &v);
    if (v == 0) v = 0;   /* -0.0 as 0.0 */
    put(t, &rc, sizeof(rc));
    put(t, &v, sizeof(v));
  }
}

static void on_control(void *ud, const smsg_control *c) {
  trace *t = ud;
  if (!c->msg || !c->obj) abort();
  put(t, "C", 1);
  put(t, &c->kind, sizeof(c->kind));
  put(t, &c->code, sizeof(c->code));
  put_field(t, c->msg, strlen(c->msg));
}

typedef struct {
  int batch_rc, stream_rc;
  char err[SMSG_ERR_MAX];
  smsg_stats st;
  trace batch, stream;
} run;

static void run_both_modes(const uint8_t *data, size_t size, bool fast, unsigned opts, run *r) {
  fast_disabled = !fast;
  memset(r->err, 0, sizeof(r->err));
  r->batch_rc = smsg_parse_batch_opt((const char *)data, size, opts, on_msg, &r->batch, r->err);
  /* rejected: a reason, nothing delivered */
  if (r->batch_rc < 0 && (!r->err[0] || r->batch.len != 0)) abort();
  memset(&r->st, 0, sizeof(r->st));
  r->stream_rc = smsg_parse_stream_opt((const char *)data, size, opts, on_msg, on_control, &r->stream, &r->st);
  if (r->stream_rc >= 0 && (uint64_t)r->stream_rc != r->st.delivered) abort();
  if (r->batch_rc >= 0 && r->stream_rc < 0) abort();   /* what batch accepts, stream parses */
}

static bool same_trace(const trace *a, const trace *b) {
  return a->len == b->len && a->seq == b->seq && (!a->len || !memcmp(a->data, b->data, a->len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  run fast = {0}, kept = {0}, slow = {0};
  run_both_modes(data, size, true, 0, &fast);
  run_both_modes(data, size, true, SMSG_OPT_NUMBERS, &kept);
  run_both_modes(data, size, false, 0, &slow);
  if (kept.batch_rc != fast.batch_rc || kept.stream_rc != fast.stream_rc) abort();
  if (!same_trace(&kept.batch, &fast.batch) || !same_trace(&kept.stream, &fast.stream)) abort();
  free(kept.batch.data);
  free(kept.stream.data);
  if (fast.batch_rc != slow.batch_rc || fast.stream_rc != slow.stream_rc) abort();
  if (fast.batch_rc < 0 && strcmp(fast.err, slow.err)) abort();
  if (memcmp(&fast.st, &slow.st, sizeof(fast.st))) abort();
  if (!same_trace(&fast.batch, &slow.batch) || !same_trace(&fast.stream, &slow.stream)) abort();
  free(fast.batch.data);
  free(fast.stream.data);
  free(slow.batch.data);
  free(slow.stream.data);
  /* The tail parser on raw bytes must never read outside them. */
  uint64_t a, b;
  smsg_payload_position((const char *)data, size, &a, &b);
  return 0;
}
