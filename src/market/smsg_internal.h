/* Private to stream_msg (include/market/stream_msg.h): what its files share.
 *
 *   smsg_schema.c   the field table of each kind and the small validators
 *   smsg_parse.c    the entry points and the jansson tier (validation, errors)
 *   smsg_encode.c   the payload encoder of jansson-read items
 *   smsg_fast.c     the fast tiers: compact one-pass items and scanned items
 *   smsg_scan.c     the scanner of the fast tiers (smsg_scan.h)
 *   smsg_payload.c  reading "S", "t", "seq" and "epoch" back from a payload
 *
 * Each kind is described once by a table of fields (name, type, required)
 * in the order tickerd publishes them; the same table drives validation,
 * batch error messages and encoding, so the three cannot disagree. */
#ifndef TD_SMSG_INTERNAL_H
#define TD_SMSG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "market/stream_msg.h"

typedef enum {
  F_TYPE,     /* "T": written from the kind */
  F_SYMBOL,   /* string, smsg_symbol_valid */
  F_CODE,     /* string, at most SMSG_CODE_MAX bytes */
  F_TEXT,     /* string */
  F_PRICE,    /* number >= 0 */
  F_UINT,     /* integer >= 0 */
  F_TIME,     /* RFC-3339 string */
  F_CODES,    /* array of F_CODE, at most SMSG_MAX_CONDITIONS */
  F_SYMBOLS   /* array of F_SYMBOL, at most SMSG_MAX_NEWS_SYMBOLS (news) */
} field_type;

typedef struct {
  const char *name;
  field_type type;
  bool required;
} field_spec;

typedef struct {
  const char *type;        /* the "T" value */
  const char *channel;
  const field_spec *fields;
  int nfields;
} kind_spec;

#define REQ true
#define OPT false

extern const kind_spec smsg__kinds[SMSG_KIND_COUNT];
/* 1 for the bytes a symbol may have: A-Z 0-9 . / - */
extern const unsigned char smsg__symbol_byte[256];

/* 1 + the kind whose "T" is the letter, 0 for other bytes: every item is
 * classified by one load rather than a walk of smsg__kinds. */
extern const signed char smsg__kind_by_letter[256];

/* The kind whose "T" is the one letter c, or -1. */
static inline int smsg__kind_of_char(char c) {
  return smsg__kind_by_letter[(unsigned char)c] - 1;
}
/* smsg_time_valid and the time it names, as seconds since 1970 (UTC) and
 * nanoseconds: 0, or -EINVAL having set nothing. */
int smsg__time_parse(const char *s, size_t n, int64_t *sec, uint32_t *nsec);
/* Seconds whose nanoseconds fit int64_t (years 1678 to 2261). */
#define SMSG_TIME_NS_MAX_S (INT64_MAX / 1000000000 - 1)
/* sec and nsec as nanoseconds since 1970: a time past 2261 reads as
 * INT64_MAX, one before 1678 as the earliest representable second, instead
 * of overflowing (RFC 3339 allows years 0000 to 9999). */
int64_t smsg__time_ns(int64_t sec, uint32_t nsec);

/* ---- number literals --------------------------------------------------- */

/* Decimal digits a double holds exactly (DBL_DIG), and so 10^k up to it. */
#define SMSG_NUMBER_FAST_DIGITS 15

/* The digits from p, appended to *m (m = m * 10 + digit): the scanners
 * gather a literal's digits either side of the point as one integer while
 * they check it. Past 19 digits m wraps, harmlessly: smsg__number then
 * takes strtod. Returns the first byte that is not a digit. */
static inline const char *smsg__digits(const char *p, const char *e, uint64_t *m) {
  uint64_t v = *m;
  for (; p < e && (unsigned char)(*p - '0') < 10; p++) v = v * 10 + (uint64_t)(*p - '0');
  *m = v;
  return p;
}

/* strtod of a literal that is not NUL-ended (at most SMSG_SCAN_NUM_MAX). */
double smsg__number_strtod(const char *lit, size_t n);

/* Integer digits that fit int64_t whatever they are (jansson's long long). */
#define SMSG_NUMBER_INT_DIGITS 18

/* The value jansson gives a checked literal lit[0..n) (a real: strtod's;
 * an integer: its long long as a double), from the digits smsg__digits
 * gathered (m) and how many follow the point (frac), without strtod in the
 * usual case: a mantissa of at most 15 digits and 10^k for k <= 15 are
 * exact doubles, so m / 10^k is rounded once, to what strtod gives
 * (Clinger's fast path). An integer of up to 18 digits is exact in int64_t
 * and rounded once to a double, as jansson's is ("-0" reads as 0). */
static inline double smsg__number(const char *lit, size_t n, uint64_t m, size_t frac, bool real) {
  static const double pow10[SMSG_NUMBER_FAST_DIGITS + 1] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                                           1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  bool neg = lit[0] == '-';
  size_t digits = n - neg - real;   /* the sign and the point are not digits */
  if (!real)
    return digits <= SMSG_NUMBER_INT_DIGITS ? (double)(neg ? -(int64_t)m : (int64_t)m) : smsg__number_strtod(lit, n);
  if (digits > SMSG_NUMBER_FAST_DIGITS) return smsg__number_strtod(lit, n);
  double d = (double)m / pow10[frac];
  return neg ? -d : d;
}

/* ---- the encoder (smsg_encode.c) ---------------------------------------- */

/* Shortest decimal that reads back as exactly v. */
char *smsg__put_double(char *o, double v);

/* What smsg_encode needs of a message of the fast tiers (smsg_msg.fast):
 * its payload is encoded already, up to the seq and epoch. */
struct smsg_fast_msg {
  const char *body;                 /* the payload up to ,"seq" */
  size_t body_len;
  char symbol[TD_SYMBOL_MAX + 1];   /* smsg_msg.symbol, NUL-terminated */
  /* The numbers of the item by field index, their values taken while the
   * literals were checked (smsg__number): smsg_msg_number reads a double,
   * with no search and no second pass over the text. Bit i of num_set:
   * field i is a number the item has. */
  const double *num;
  uint32_t num_set;
  /* Its "t", converted while it was checked (smsg_msg_time); has_t is false
   * for kinds without one (news). */
  int64_t t_ns;
  bool has_t;
};

/* ---- the fast tiers (smsg_fast.c) ---------------------------------------- */

/* Checks and encodes every item, then delivers them all. Returns the number
 * of items, or -1 having made no callback: the jansson tier's turn. */
int smsg__fast_parse(const char *buf, size_t len, smsg_msg_cb on_msg, void *ud, size_t *delivered);

/* Items read by the jansson tier (smsg_get_tier_stats). */
extern uint64_t smsg__jansson_items;

#endif
