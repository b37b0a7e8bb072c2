/* Reading a published payload back (stream_msg.h): its symbol, its time
 * and its position, without parsing the rest; and a parsed message's
 * numbers and time, from what the parser kept. */
#include "smsg_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/hex.h"
#include "smsg_scan.h"

/* Epochs are written in lower case only, so one value has one spelling. */
static int hexval_lower(char c) { return c >= 'A' && c <= 'F' ? -1 : hex_value(c); }

/* {"T":"<kind>","S":"<symbol>",... : smsg_encode writes "T" and "S" first. */
int smsg_payload_symbol(const char *p, size_t n, const char **sym, size_t *sym_len) {
  static const char head[] = "{\"T\":\"", s_key[] = "\",\"S\":\"";
  const size_t hlen = sizeof(head) - 1, slen = sizeof(s_key) - 1;
  if (n < hlen || memcmp(p, head, hlen)) return -EINVAL;
  const char *t_end = memchr(p + hlen, '"', n - hlen);
  if (!t_end || (size_t)(p + n - t_end) < slen || memcmp(t_end, s_key, slen)) return -EINVAL;
  const char *s = t_end + slen, *end = p + n;
  const char *q = memchr(s, '"', (size_t)(end - s));
  if (!q || !smsg_symbol_valid(s, (size_t)(q - s))) return -EINVAL;
  *sym = s;
  *sym_len = (size_t)(q - s);
  return 0;
}

int smsg_payload_time(const char *p, size_t n, int64_t *sec, uint32_t *nsec) {
  static const char key[] = ",\"t\":\"";
  const size_t klen = sizeof(key) - 1;
  const char *k = memmem(p, n, key, klen);
  if (!k) return -EINVAL;
  const char *t = k + klen, *end = p + n;
  const char *q = memchr(t, '"', (size_t)(end - t));
  return q ? smsg__time_parse(t, (size_t)(q - t), sec, nsec) : -EINVAL;
}

/* ---- a parsed message's numbers ----------------------------------------------- */

const double smsg__pow10[SMSG_NUMBER_FAST_DIGITS + 1] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                                          1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};

double smsg__number_strtod(const char *lit, size_t n) {
  char tmp[SMSG_SCAN_NUM_MAX + 1];
  if (n > SMSG_SCAN_NUM_MAX) n = SMSG_SCAN_NUM_MAX;   /* the fast tiers take no longer literal */
  memcpy(tmp, lit, n);
  tmp[n] = '\0';
  return strtod(tmp, NULL);
}

/* (Half the candles' time per trade under callgrind was strtod's.) A ','
 * or '}' ends the literal in the buffer; more than 15 digits or an
 * exponent take strtod. */
double smsg__literal_value(const char *v) {
  /* the digits either side of the point as one integer (unsigned: a long
   * literal wraps harmlessly, and takes strtod) */
  const char *p = v + (*v == '-'), *start = p;
  uint64_t m = 0;
  for (; *p >= '0' && *p <= '9'; p++) m = m * 10 + (uint64_t)(*p - '0');
  size_t digits = (size_t)(p - start), frac = 0;
  if (*p == '.') {
    const char *f = ++p;
    for (; *p >= '0' && *p <= '9'; p++) m = m * 10 + (uint64_t)(*p - '0');
    frac = (size_t)(p - f);
  }
  if (digits + frac > SMSG_NUMBER_FAST_DIGITS || *p == 'e' || *p == 'E') return strtod(v, NULL);
  double d = (double)m / smsg__pow10[frac];
  return *v == '-' ? -d : d;
}

/* smsg_msg_number past the values the parse kept. */
int smsg__msg_number(const smsg_msg *m, smsg_field f, double *out) {
  int i = SMSG_FIELD_INDEX(f);
  if ((int)f >> 8 != (int)m->kind) return -ENOENT;
  if (m->obj) {   /* the jansson tier: the value it read */
    if (!m->fields[i]) return -ENOENT;
    *out = json_number_value(m->fields[i]);
    return 0;
  }
  /* The fast tiers checked the literal; a ',' or '}' ends it in the buffer. */
  uint32_t off = m->fast->num_off[i];
  if (!off) return -ENOENT;
  *out = smsg__literal_value(m->fast->src + off);
  return 0;
}

int smsg__msg_time(const smsg_msg *m, int64_t *ns) {
  if (!m->obj) return -ENOENT;   /* the fast tiers converted any (has_t) */
  const kind_spec *ks = &smsg__kinds[m->kind];
  for (int i = 0; i < ks->nfields; i++) {
    if (strcmp(ks->fields[i].name, "t") != 0) continue;
    int64_t sec;
    uint32_t nsec;
    const struct json_t *v = m->fields[i];
    if (!v || smsg__time_parse(json_string_value(v), json_string_length(v), &sec, &nsec) != 0) return -ENOENT;
    *ns = smsg__time_ns(sec, nsec);
    return 0;
  }
  return -ENOENT;
}

int smsg_payload_position(const char *p, size_t n, uint64_t *seq, uint64_t *epoch) {
  static const char ep[] = ",\"epoch\":\"";
  const size_t eplen = sizeof(ep) - 1;
  /* ...,"seq":N,"epoch":"<16 hex>"} */
  if (n < eplen + SMSG_EPOCH_LEN + 2 + 8) return -EINVAL;
  const char *e = p + n - 2 - SMSG_EPOCH_LEN - eplen;
  if (memcmp(e, ep, eplen) || p[n - 2] != '"' || p[n - 1] != '}') return -EINVAL;
  uint64_t ev = 0;
  for (size_t i = 0; i < SMSG_EPOCH_LEN; i++) {
    int h = hexval_lower(e[eplen + i]);
    if (h < 0) return -EINVAL;
    ev = ev << 4 | (uint64_t)h;
  }
  const char *d = e;
  while (d > p && d[-1] >= '0' && d[-1] <= '9') d--;
  size_t nd = (size_t)(e - d);
  static const char sk[] = ",\"seq\":";
  const size_t sklen = sizeof(sk) - 1;
  if (nd == 0 || nd > 20 || (size_t)(d - p) < sklen || memcmp(d - sklen, sk, sklen)) return -EINVAL;
  uint64_t sv = 0;
  for (size_t i = 0; i < nd; i++) {
    uint64_t dv = (uint64_t)(d[i] - '0');
    if (sv > (UINT64_MAX - dv) / 10) return -EINVAL;
    sv = sv * 10 + dv;
  }
  *seq = sv;
  *epoch = ev;
  return 0;
}
