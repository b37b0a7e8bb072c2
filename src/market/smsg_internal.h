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

/* ---- number literals (smsg_payload.c) ----------------------------------- */

/* Decimal digits a double holds exactly (DBL_DIG), and so 10^k up to it. */
#define SMSG_NUMBER_FAST_DIGITS 15
extern const double smsg__pow10[SMSG_NUMBER_FAST_DIGITS + 1];

/* strtod of a checked literal that is not NUL-ended (at most
 * SMSG_SCAN_NUM_MAX bytes, the longest the fast tiers take). */
double smsg__number_strtod(const char *lit, size_t n);

/* A checked literal as strtod reads it, without strtod's cost in the
 * usual case: a mantissa of at most 15 digits and 10^k for k <= 15 are
 * exact doubles, so m / 10^k is rounded once, to what strtod gives
 * (Clinger's fast path). smsg_msg_number's pass over the literal when the
 * parse did not keep its value (SMSG_OPT_NUMBERS). */
double smsg__literal_value(const char *v);

/* Bit i of [kind]: field i is a number smsg_msg_number serves (an SMSG_F_*
 * constant), whose value SMSG_OPT_NUMBERS keeps. */
extern const uint32_t smsg__number_fields[SMSG_KIND_COUNT];

/* ---- the encoder (smsg_encode.c) ---------------------------------------- */

/* Shortest decimal that reads back as exactly v. */
char *smsg__put_double(char *o, double v);

/* What smsg_encode needs of a message of the fast tiers (smsg_msg.fast):
 * its payload is encoded already, up to the seq and epoch. */
struct smsg_fast_msg {
  const char *body;                 /* the payload up to ,"seq" */
  size_t body_len;
  char symbol[TD_SYMBOL_MAX + 1];   /* smsg_msg.symbol, NUL-terminated */
  /* The numbers of the item, where they are in the parsed buffer `src` (0:
   * absent or not a number), by field index: read back by smsg_msg_number
   * without a search (the values SMSG_OPT_NUMBERS kept are in smsg_msg). */
  const char *src;
  const uint32_t *num_off;
};

/* ---- the fast tiers (smsg_fast.c) ---------------------------------------- */

/* Checks and encodes every item, then delivers them all. Returns the number
 * of items, or -1 having made no callback: the jansson tier's turn. */
int smsg__fast_parse(const char *buf, size_t len, unsigned opts, smsg_msg_cb on_msg, void *ud, size_t *delivered);

/* Items read by the jansson tier (smsg_get_tier_stats). */
extern uint64_t smsg__jansson_items;

#endif
