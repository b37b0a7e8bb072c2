/* stream_msg's encoder: the published payload of an item the jansson tier
 * read, written from the fields the validator found (no lookups, no jansson
 * serializer), known fields in the kind's order, then "seq" and "epoch".
 * Items of the fast tiers come encoded already (smsg_fast.c). */
#include "smsg_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fmt_num.h"
#include "base/jsonw.h"

/* Payloads up to this size are built on the stack and copied once into an
 * exactly sized td_buf; quotes are about 200 bytes. */
#define ENC_STACK_BYTES 2048

static const double pow10_tab[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/* Shortest decimal that reads back as exactly v. Prices have few decimals:
 * find the smallest k <= 9 such that round(v * 10^k) / 10^k == v. Both
 * operands of that division are exact doubles (below 2^53), so the division
 * is correctly rounded exactly like strtod of the decimal text: equality
 * proves the text round-trips. Other values fall back to %.15g..%.17g. */
char *smsg__put_double(char *o, double v) {
  if (v == 0) {
    *o++ = '0';
    return o;
  }
  double a = fabs(v);
  for (int k = 0; k < 10 && a < 1e15; k++) {
    double r = floor(a * pow10_tab[k] + 0.5);
    if (r >= 9007199254740992.0) break;
    if (r / pow10_tab[k] != a) continue;
    uint64_t u = (uint64_t)r;
    if (v < 0) *o++ = '-';
    if (k == 0) return fmt_u64(o, u);
    char d[24];
    int n = (int)(fmt_u64(d, u) - d);
    uint64_t ip = u / (uint64_t)pow10_tab[k];
    o = fmt_u64(o, ip);
    *o++ = '.';
    int frac = n - (ip ? n - k : 0);
    for (int z = frac; z < k; z++) *o++ = '0';     /* leading zeros of the fraction */
    const char *fd = d + (ip ? n - k : 0);
    int fl = ip ? k : n;
    while (fl > 1 && fd[fl - 1] == '0') fl--;
    memcpy(o, fd, (size_t)fl);
    return o + fl;
  }
  char tmp[32];
  for (int prec = 15; prec <= 17; prec++) {
    int n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
    if (prec == 17 || strtod(tmp, NULL) == v) {
      memcpy(o, tmp, (size_t)n);
      return o + n;
    }
  }
  return o;
}

static char *put_key(char *o, const char *k, bool first) {
  if (!first) *o++ = ',';
  *o++ = '"';
  size_t n = strlen(k);
  memcpy(o, k, n);
  o += n;
  *o++ = '"';
  *o++ = ':';
  return o;
}

/* Bytes a value can take at most once encoded (\u00XX is 6 per byte). */
static size_t value_bound(const json_t *v) {
  if (json_is_string(v)) return 6 * json_string_length(v) + 2;
  if (json_is_array(v)) {
    size_t b = 2, n = json_array_size(v);
    for (size_t i = 0; i < n; i++) b += 6 * json_string_length(json_array_get(v, i)) + 3;
    return b;
  }
  return 32;
}

static char *put_value(char *o, const json_t *v) {
  if (json_is_string(v)) return json_quote(o, json_string_value(v), json_string_length(v));
  if (json_is_integer(v)) return fmt_i64(o, json_integer_value(v));
  if (json_is_real(v)) return smsg__put_double(o, json_real_value(v));
  *o++ = '[';
  size_t n = json_array_size(v);
  for (size_t i = 0; i < n; i++) {
    if (i) *o++ = ',';
    const json_t *s = json_array_get(v, i);
    o = json_quote(o, json_string_value(s), json_string_length(s));
  }
  *o++ = ']';
  return o;
}

/* The bytes ,"seq":<20 digits>,"epoch":"<16 hex>"} take at most. */
#define ENC_TAIL_MAX (7 + 20 + 10 + SMSG_EPOCH_LEN + 2)

static char *put_tail(char *o, uint64_t seq, const char *epoch) {
  memcpy(o, ",\"seq\":", 7);
  o = fmt_u64(o + 7, seq);
  memcpy(o, ",\"epoch\":\"", 10);
  memcpy(o + 10, epoch, SMSG_EPOCH_LEN);
  o += 10 + SMSG_EPOCH_LEN;
  *o++ = '"';
  *o++ = '}';
  return o;
}

static char *encode_into(char *o, const smsg_msg *m, uint64_t seq, const char *epoch) {
  const kind_spec *ks = &smsg__kinds[m->kind];
  *o++ = '{';
  for (int i = 0; i < ks->nfields; i++) {
    const field_spec *f = &ks->fields[i];
    if (f->type == F_TYPE) {
      o = put_key(o, "T", i == 0);
      o = json_quote(o, ks->type, 1);
    } else if (m->fields[i]) {
      o = put_key(o, f->name, i == 0);
      o = put_value(o, m->fields[i]);
    }
  }
  return put_tail(o, seq, epoch);
}

/* A message of the fast tiers: its body, then the tail. */
static td_buf *fast_encode(const struct smsg_fast_msg *f, uint64_t seq, const char *epoch) {
  char tail[ENC_TAIL_MAX];
  size_t tn = (size_t)(put_tail(tail, seq, epoch) - tail);
  td_buf *b = buf_new(f->body_len + tn);
  if (!b) return NULL;
  memcpy(b->data, f->body, f->body_len);
  memcpy(b->data + f->body_len, tail, tn);
  b->len = (uint32_t)(f->body_len + tn);
  return b;
}

td_buf *smsg_encode(const smsg_msg *m, uint64_t seq, const char *epoch) {
  if (!m->obj) return fast_encode(m->fast, seq, epoch);
  const kind_spec *ks = &smsg__kinds[m->kind];
  size_t bound = 64 + SMSG_EPOCH_LEN;
  for (int i = 0; i < ks->nfields; i++)
    bound += strlen(ks->fields[i].name) + 4 + (m->fields[i] ? value_bound(m->fields[i]) : 0);
  if (bound <= ENC_STACK_BYTES) {
    char tmp[ENC_STACK_BYTES];
    char *end = encode_into(tmp, m, seq, epoch);
    return buf_from(tmp, (size_t)(end - tmp));
  }
  td_buf *b = buf_new(bound);
  if (!b) return NULL;
  b->len = (uint32_t)(encode_into(b->data, m, seq, epoch) - b->data);
  return b;
}
