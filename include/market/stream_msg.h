/* Alpaca v2 market-data stream messages: parse, validate, encode.
 *
 * One buffer holds a JSON array of messages or a single message object; it is
 * parsed once with jansson. Every market-data item is checked against the
 * documented v2 schema of its kind (required fields, JSON types, ranges,
 * symbols, RFC-3339 times) and handed to a callback that may encode the
 * payload tickerd publishes: the message's known fields in Alpaca's order,
 * with "seq" and "epoch" appended (see docs/messages.md).
 *
 * Two modes:
 *   smsg_parse_batch   POST /quotes: all or nothing. One bad item rejects the
 *                      batch before any callback runs, with a message naming
 *                      the item and the problem ("item 3: field \"bp\" must
 *                      be a number").
 *   smsg_parse_stream  upstream feeds: bad items are skipped and counted by
 *                      reason, good ones are delivered; control messages
 *                      (success, error, subscription) go to their own callback.
 */
#ifndef TD_STREAM_MSG_H
#define TD_STREAM_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/td_limits.h"

struct json_t;

typedef enum {
  SMSG_QUOTE,          /* "q" */
  SMSG_TRADE,          /* "t" */
  SMSG_BAR,            /* "b" */
  SMSG_UPDATED_BAR,    /* "u" */
  SMSG_DAILY_BAR,      /* "d" */
  SMSG_STATUS,         /* "s" */
  SMSG_LULD,           /* "l" */
  SMSG_CORRECTION,     /* "c" */
  SMSG_CANCEL_ERROR,   /* "x" */
  SMSG_NEWS,           /* "n" */
  SMSG_KIND_COUNT
} smsg_kind;

typedef enum { SMSG_CTL_SUCCESS, SMSG_CTL_ERROR, SMSG_CTL_SUBSCRIPTION } smsg_ctl_kind;

/* Why stream mode skipped an item (a counter each, for /metrics). */
typedef enum {
  SMSG_SKIP_NOT_OBJECT,    /* an array element that is not an object */
  SMSG_SKIP_NO_TYPE,       /* "T" missing or not a string */
  SMSG_SKIP_UNKNOWN_TYPE,  /* "T" names no kind we know */
  SMSG_SKIP_MISSING,       /* a required field is absent */
  SMSG_SKIP_TYPE,          /* a field has the wrong JSON type */
  SMSG_SKIP_RANGE,         /* a number is negative or a string too long */
  SMSG_SKIP_SYMBOL,        /* a symbol outside [A-Z0-9./-]{1,TD_SYMBOL_MAX} */
  SMSG_SKIP_TIME,          /* a timestamp that is not RFC 3339 */
  SMSG_SKIP_CONTROL,       /* a control message and no control callback */
  SMSG_SKIP_COUNT
} smsg_skip_reason;

/* The longest batch-mode error message; longer ones are truncated. */
#define SMSG_ERR_MAX 160
/* Exchange, tape and condition codes are one or two letters in Alpaca's
 * feeds; 16 bytes leaves room without letting a code carry a document. */
#define SMSG_CODE_MAX 16
/* Alpaca sends a handful of conditions per trade or quote. */
#define SMSG_MAX_CONDITIONS 16
/* Symbols one news item may name (each gets its own publication). */
#define SMSG_MAX_NEWS_SYMBOLS 64
/* Fields of the widest kind (corrections: 14); sizes the field table. */
#define SMSG_MAX_FIELDS 16
/* "2026-11-21T20:00:00.123456789+05:30" is 35 bytes. */
#define SMSG_TIME_MAX 40
/* An epoch is 16 lowercase hex characters (64 random bits). */
#define SMSG_EPOCH_LEN 16

/* One valid market-data message, valid only during the callback. A news
 * item naming several symbols is delivered once per symbol. */
typedef struct smsg_msg {
  smsg_kind kind;
  const char *symbol;        /* NUL-terminated */
  size_t symbol_len;
  const char *channel;       /* smsg_kind_channel(kind) */
  size_t index;              /* item index in the buffer */
  /* Private to stream_msg (smsg_*.c): the item and its fields in schema order, or,
   * when obj is NULL, the fast path's encoded item (no jansson tree). */
  const struct json_t *obj;
  const struct json_t *fields[SMSG_MAX_FIELDS];
  const struct smsg_fast_msg *fast;
  /* The values SMSG_OPT_NUMBERS kept, by field index; bit i of num_set:
   * num[i] is field i's (read inline by smsg_msg_number). */
  const double *num;
  uint32_t num_set;
  /* The time "t" the fast tiers converted while checking it (has_t), read
   * inline by smsg_msg_time; the jansson tier's is read from its tree. */
  int64_t t_ns;
  bool has_t;
} smsg_msg;

/* A control message (stream mode), valid only during the callback. */
typedef struct smsg_control {
  smsg_ctl_kind kind;
  const char *msg;           /* "msg" text, "" when absent */
  int64_t code;              /* error "code", 0 when absent */
  const struct json_t *obj;  /* the whole object (subscription lists) */
} smsg_control;

typedef void (*smsg_msg_cb)(void *ud, const smsg_msg *m);
typedef void (*smsg_ctl_cb)(void *ud, const smsg_control *c);

/* Cumulative counters of stream mode; the caller owns and zeroes them. */
typedef struct smsg_stats {
  uint64_t buffers;          /* buffers parsed */
  uint64_t bad_json;         /* buffers that were not JSON array/object */
  uint64_t items;            /* items seen */
  uint64_t delivered;        /* message callbacks made */
  uint64_t controls;         /* control callbacks made */
  uint64_t skipped[SMSG_SKIP_COUNT];
} smsg_stats;

/* Which parser tier read the items, over the process (every caller: feeds,
 * POST /quotes, the Alpaca client): the one-pass reader of compact Alpaca
 * objects, the scanner (smsg_scan.c), and jansson for the rest. */
typedef struct {
  uint64_t compact_items;
  uint64_t scanned_items;
  uint64_t jansson_items;
  uint64_t fast_abandoned;   /* buffers the fast tiers gave up on (then read by jansson) */
} smsg_tier_stats;
void smsg_get_tier_stats(smsg_tier_stats *out);

/* Batch mode. Returns the number of items (all valid, all delivered), or
 * -EINVAL with `err` holding why, and no callback made. */
int smsg_parse_batch(const char *buf, size_t len, smsg_msg_cb on_msg, void *ud,
                     char err[SMSG_ERR_MAX]);

/* Stream mode. Returns the number of message callbacks made, or -EINVAL
 * when the buffer is not a JSON array or object (counted in bad_json).
 * `on_control` may be NULL: control messages are then skipped. */
int smsg_parse_stream(const char *buf, size_t len, smsg_msg_cb on_msg, smsg_ctl_cb on_control,
                      void *ud, smsg_stats *stats);

/* What a parse keeps beyond checking and encoding (the _opt entry points;
 * the plain ones pass 0). SMSG_OPT_NUMBERS: the values of the numbers
 * smsg_msg_number serves (the SMSG_F_* fields below), converted by the
 * fast tiers while they check the literals, for a reader of every
 * message's numbers (the candles: three per trade), which then does not
 * parse them again. It costs every such number its conversion, so a caller
 * that reads none (candles off) leaves it out; smsg_msg_number then parses
 * the literal when asked. */
enum { SMSG_OPT_NUMBERS = 1u << 0 };
int smsg_parse_batch_opt(const char *buf, size_t len, unsigned opts, smsg_msg_cb on_msg, void *ud,
                         char err[SMSG_ERR_MAX]);
int smsg_parse_stream_opt(const char *buf, size_t len, unsigned opts, smsg_msg_cb on_msg, smsg_ctl_cb on_control,
                          void *ud, smsg_stats *stats);

/* The published payload of `m`: compact JSON, known fields in Alpaca's order,
 * then "seq" and "epoch" (SMSG_EPOCH_LEN hex chars). One td_buf reference,
 * or NULL on OOM. Unknown input fields, including any "seq"/"epoch" a sender
 * supplied, are not copied. */
td_buf *smsg_encode(const smsg_msg *m, uint64_t seq, const char *epoch);

/* Reads the "seq" and "epoch" that end a published payload (as produced by
 * smsg_encode, e.g. received back from Redis) without parsing the rest.
 * Returns 0, or -EINVAL when the tail is not `,"seq":N,"epoch":"<hex16>"}`. */
int smsg_payload_position(const char *p, size_t n, uint64_t *seq, uint64_t *epoch);

/* The "S" of a published payload (smsg_encode writes it right after "T"):
 * *sym points into p. 0, or -EINVAL when the payload does not begin
 * {"T":"..","S":"<valid symbol>". */
int smsg_payload_symbol(const char *p, size_t n, const char **sym, size_t *sym_len);

/* The quote time "t" of a published payload as seconds since 1970 (UTC)
 * and nanoseconds. 0, or -EINVAL when there is no valid ,"t":"<RFC 3339>". */
int smsg_payload_time(const char *p, size_t n, int64_t *sec, uint32_t *nsec);

/* The numbers smsg_msg_number reads, each named with its kind and placed
 * by its index in the kind's field table (smsg_schema.c lays the tables
 * out with these constants): a reader finds a field without searching its
 * name, and asking a message of another kind is an error, not its field at
 * that index. */
#define SMSG_FIELD(kind, index) ((kind) << 8 | (index))
#define SMSG_FIELD_INDEX(f) ((f) & 0xff)
typedef enum {
  SMSG_F_QUOTE_BP = SMSG_FIELD(SMSG_QUOTE, 3),
  SMSG_F_QUOTE_AP = SMSG_FIELD(SMSG_QUOTE, 6),
  SMSG_F_TRADE_I = SMSG_FIELD(SMSG_TRADE, 2),
  SMSG_F_TRADE_P = SMSG_FIELD(SMSG_TRADE, 4),
  SMSG_F_TRADE_S = SMSG_FIELD(SMSG_TRADE, 5),
  SMSG_F_CORRECTION_OI = SMSG_FIELD(SMSG_CORRECTION, 3),
  SMSG_F_CORRECTION_OP = SMSG_FIELD(SMSG_CORRECTION, 4),
  SMSG_F_CORRECTION_OS = SMSG_FIELD(SMSG_CORRECTION, 5),
  SMSG_F_CORRECTION_CP = SMSG_FIELD(SMSG_CORRECTION, 8),
  SMSG_F_CORRECTION_CS = SMSG_FIELD(SMSG_CORRECTION, 9),
  SMSG_F_CANCEL_I = SMSG_FIELD(SMSG_CANCEL_ERROR, 2),
  SMSG_F_CANCEL_P = SMSG_FIELD(SMSG_CANCEL_ERROR, 4),
  SMSG_F_CANCEL_S = SMSG_FIELD(SMSG_CANCEL_ERROR, 5),
} smsg_field;

/* Number f of a message during its callback, as the parser read it (no
 * payload is searched): 0, or -ENOENT when f is not of the message's kind
 * or the message left it out. */
int smsg__msg_number(const smsg_msg *m, smsg_field f, double *out);
/* Inline for a value the parse kept (SMSG_OPT_NUMBERS): the candles read
 * three per trade, and the call cost more than the read. The call writes a
 * local of its own: given `out`, it would hold the caller's variable in
 * memory on the common path too. */
static inline int smsg_msg_number(const smsg_msg *m, smsg_field f, double *out) {
  int i = SMSG_FIELD_INDEX(f);
  if ((m->num_set >> i & 1) && (int)f >> 8 == (int)m->kind) {
    *out = m->num[i];
    return 0;
  }
  double v;
  int r = smsg__msg_number(m, f, &v);
  if (r == 0) *out = v;
  return r;
}
/* Its time "t" in nanoseconds since 1970 (UTC): 0 or -ENOENT. Inline for
 * the fast tiers' messages (the candles read it per trade). */
int smsg__msg_time(const smsg_msg *m, int64_t *ns);
static inline int smsg_msg_time(const smsg_msg *m, int64_t *ns) {
  if (m->has_t) {
    *ns = m->t_ns;
    return 0;
  }
  return smsg__msg_time(m, ns);
}

bool smsg_symbol_valid(const char *s, size_t n);
/* "quotes", "trades", ... ; NULL for an out-of-range kind. */
const char *smsg_kind_channel(smsg_kind k);
/* The kind whose channel name is s[0..n), or -1. */
int smsg_kind_from_channel(const char *s, size_t n);
/* "not_object", "no_type", ... for metrics labels. */
const char *smsg_skip_name(smsg_skip_reason r);
/* 0 when `s` is RFC 3339 date-time (fraction up to 9 digits), else -EINVAL. */
int smsg_time_valid(const char *s, size_t n);

#endif
