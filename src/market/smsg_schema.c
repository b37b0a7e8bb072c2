/* stream_msg's schema: the field table of each kind (smsg_internal.h) and
 * the small validators of symbols, kinds and RFC 3339 times. */
#include "smsg_internal.h"

#include <errno.h>
#include <string.h>

/* The fields smsg_msg_number reads sit at the index their smsg_field
 * constant gives (a constant that disagrees with the order around it
 * overwrites a field, which -Wextra rejects, or leaves a hole, which
 * test_field_constants finds). */
#define I(f) SMSG_FIELD_INDEX(f)

/* Quotes follow the wire protocol's order (common.md); the other kinds list
 * Alpaca's documented fields with the tape and the time last, like quotes. */
static const field_spec quote_fields[] = {
  {"T", F_TYPE, REQ},   {"S", F_SYMBOL, REQ}, {"bx", F_CODE, REQ}, [I(SMSG_F_QUOTE_BP)] = {"bp", F_PRICE, REQ},
  {"bs", F_UINT, REQ},  {"ax", F_CODE, REQ},  [I(SMSG_F_QUOTE_AP)] = {"ap", F_PRICE, REQ}, {"as", F_UINT, REQ},
  {"c", F_CODES, OPT},  {"z", F_CODE, OPT},   {"t", F_TIME, REQ},
};
static const field_spec trade_fields[] = {
  {"T", F_TYPE, REQ}, {"S", F_SYMBOL, REQ}, [I(SMSG_F_TRADE_I)] = {"i", F_UINT, REQ},  {"x", F_CODE, REQ},
  [I(SMSG_F_TRADE_P)] = {"p", F_PRICE, REQ}, [I(SMSG_F_TRADE_S)] = {"s", F_UINT, REQ},  {"c", F_CODES, OPT}, {"z", F_CODE, OPT},
  {"t", F_TIME, REQ},
};
static const field_spec bar_fields[] = {
  {"T", F_TYPE, REQ},  {"S", F_SYMBOL, REQ}, {"o", F_PRICE, REQ}, {"h", F_PRICE, REQ},
  {"l", F_PRICE, REQ}, {"c", F_PRICE, REQ},  {"v", F_UINT, REQ},  {"n", F_UINT, OPT},
  {"vw", F_PRICE, OPT}, {"t", F_TIME, REQ},
};
static const field_spec status_fields[] = {
  {"T", F_TYPE, REQ}, {"S", F_SYMBOL, REQ}, {"sc", F_CODE, REQ}, {"sm", F_TEXT, OPT},
  {"rc", F_CODE, OPT}, {"rm", F_TEXT, OPT}, {"z", F_CODE, OPT},  {"t", F_TIME, REQ},
};
static const field_spec luld_fields[] = {
  {"T", F_TYPE, REQ}, {"S", F_SYMBOL, REQ}, {"u", F_PRICE, REQ}, {"d", F_PRICE, REQ},
  {"i", F_CODE, REQ}, {"z", F_CODE, OPT},   {"t", F_TIME, REQ},
};
static const field_spec correction_fields[] = {
  {"T", F_TYPE, REQ},  {"S", F_SYMBOL, REQ}, {"x", F_CODE, REQ},   [I(SMSG_F_CORRECTION_OI)] = {"oi", F_UINT, REQ},
  [I(SMSG_F_CORRECTION_OP)] = {"op", F_PRICE, REQ}, [I(SMSG_F_CORRECTION_OS)] = {"os", F_UINT, REQ},
  {"oc", F_CODES, OPT}, {"ci", F_UINT, REQ},
  [I(SMSG_F_CORRECTION_CP)] = {"cp", F_PRICE, REQ}, [I(SMSG_F_CORRECTION_CS)] = {"cs", F_UINT, REQ},  {"cc", F_CODES, OPT}, {"z", F_CODE, OPT},
  {"t", F_TIME, REQ},
};
static const field_spec cancel_fields[] = {
  {"T", F_TYPE, REQ}, {"S", F_SYMBOL, REQ}, [I(SMSG_F_CANCEL_I)] = {"i", F_UINT, REQ}, {"x", F_CODE, REQ},
  [I(SMSG_F_CANCEL_P)] = {"p", F_PRICE, REQ}, [I(SMSG_F_CANCEL_S)] = {"s", F_UINT, REQ},
  {"a", F_CODE, REQ}, {"z", F_CODE, OPT},
  {"t", F_TIME, REQ},
};
static const field_spec news_fields[] = {
  {"T", F_TYPE, REQ},        {"id", F_UINT, REQ},        {"headline", F_TEXT, REQ},
  {"summary", F_TEXT, OPT},  {"author", F_TEXT, OPT},    {"created_at", F_TIME, REQ},
  {"updated_at", F_TIME, OPT}, {"url", F_TEXT, OPT},     {"content", F_TEXT, OPT},
  {"symbols", F_SYMBOLS, REQ}, {"source", F_TEXT, OPT},
};

const signed char smsg__kind_by_letter[256] = {
  ['q'] = 1 + SMSG_QUOTE,       ['t'] = 1 + SMSG_TRADE,       ['b'] = 1 + SMSG_BAR,
  ['u'] = 1 + SMSG_UPDATED_BAR, ['d'] = 1 + SMSG_DAILY_BAR,   ['s'] = 1 + SMSG_STATUS,
  ['l'] = 1 + SMSG_LULD,        ['c'] = 1 + SMSG_CORRECTION,  ['x'] = 1 + SMSG_CANCEL_ERROR,
  ['n'] = 1 + SMSG_NEWS,
};

/* The "T" letter of each kind is also in smsg__kind_by_letter above;
 * test_every_kind checks that the two agree. */
#define KIND(t, ch, f) {t, ch, f, (int)(sizeof(f) / sizeof(f[0]))}
const kind_spec smsg__kinds[SMSG_KIND_COUNT] = {
  [SMSG_QUOTE] = KIND("q", "quotes", quote_fields),
  [SMSG_TRADE] = KIND("t", "trades", trade_fields),
  [SMSG_BAR] = KIND("b", "bars", bar_fields),
  [SMSG_UPDATED_BAR] = KIND("u", "updatedBars", bar_fields),
  [SMSG_DAILY_BAR] = KIND("d", "dailyBars", bar_fields),
  [SMSG_STATUS] = KIND("s", "statuses", status_fields),
  [SMSG_LULD] = KIND("l", "lulds", luld_fields),
  [SMSG_CORRECTION] = KIND("c", "corrections", correction_fields),
  [SMSG_CANCEL_ERROR] = KIND("x", "cancelErrors", cancel_fields),
  [SMSG_NEWS] = KIND("n", "news", news_fields),
};

/* Every SMSG_F_* constant, as bits by kind: what SMSG_OPT_NUMBERS keeps. */
#define B(f) (1u << I(f))
const uint32_t smsg__number_fields[SMSG_KIND_COUNT] = {
  [SMSG_QUOTE] = B(SMSG_F_QUOTE_BP) | B(SMSG_F_QUOTE_AP),
  [SMSG_TRADE] = B(SMSG_F_TRADE_I) | B(SMSG_F_TRADE_P) | B(SMSG_F_TRADE_S),
  [SMSG_CORRECTION] = B(SMSG_F_CORRECTION_OI) | B(SMSG_F_CORRECTION_OP) | B(SMSG_F_CORRECTION_OS) |
                      B(SMSG_F_CORRECTION_CP) | B(SMSG_F_CORRECTION_CS),
  [SMSG_CANCEL_ERROR] = B(SMSG_F_CANCEL_I) | B(SMSG_F_CANCEL_P) | B(SMSG_F_CANCEL_S),
};

static const char *skip_names[SMSG_SKIP_COUNT] = {
  "not_object", "no_type", "unknown_type", "missing_field", "bad_type",
  "out_of_range", "bad_symbol", "bad_time", "control",
};

const unsigned char smsg__symbol_byte[256] = {
  ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
  ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
  ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
  ['Y'] = 1, ['Z'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
  ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['.'] = 1, ['/'] = 1, ['-'] = 1,
};

bool smsg_symbol_valid(const char *s, size_t n) {
  if (n == 0 || n > TD_SYMBOL_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if (!smsg__symbol_byte[(unsigned char)s[i]]) return false;
  return true;
}

const char *smsg_kind_channel(smsg_kind k) {
  return (unsigned)k < SMSG_KIND_COUNT ? smsg__kinds[k].channel : NULL;
}

int smsg_kind_from_channel(const char *s, size_t n) {
  for (int k = 0; k < SMSG_KIND_COUNT; k++)
    if (strlen(smsg__kinds[k].channel) == n && !memcmp(smsg__kinds[k].channel, s, n)) return k;
  return -1;
}

const char *smsg_skip_name(smsg_skip_reason r) {
  return (unsigned)r < SMSG_SKIP_COUNT ? skip_names[r] : "unknown";
}

/* Two digits as a number, or a value above 99 when either is not a digit. */
static unsigned two_digits(const char *s) {
  unsigned a = (unsigned)(s[0] - '0'), b = (unsigned)(s[1] - '0');
  return a < 10 && b < 10 ? a * 10 + b : 100;
}

/* Eight digits at s as a number, or -1 when a byte is not a digit: a few
 * multiplications on one 8-byte word, not eight steps (the SWAR of
 * simdjson's parse_eight_digits_unrolled). Most feeds stamp nanoseconds,
 * so this is most of the fraction of every message's time. */
static int64_t eight_digits(const char *s) {
  uint64_t v;
  memcpy(&v, s, 8);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  /* every byte 0x30..0x39: its high nibble is 3, and adding 6 keeps it 3 */
  if (((v & 0xF0F0F0F0F0F0F0F0) | (((v + 0x0606060606060606) & 0xF0F0F0F0F0F0F0F0) >> 4)) != 0x3333333333333333)
    return -1;
  v = (v & 0x0F0F0F0F0F0F0F0F) * 2561 >> 8;
  v = (v & 0x00FF00FF00FF00FF) * 6553601 >> 16;
  return (uint32_t)((v & 0x0000FFFF0000FFFF) * 42949672960001 >> 32);
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar
 * (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac]Z|(+|-)HH:MM, with the
 * fraction limited to nanoseconds, which is all any feed sends. Every
 * message carries one, so it is checked and converted in the same pass:
 * the fixed part without loops, each digit pair read once. */
int smsg__time_parse(const char *s, size_t n, int64_t *sec, uint32_t *nsec) {
  if (n < 20 || n > SMSG_TIME_MAX) return -EINVAL;
  if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
    return -EINVAL;
  unsigned yh = two_digits(s), yl = two_digits(s + 2), mo = two_digits(s + 5),
           d = two_digits(s + 8), h = two_digits(s + 11), mi = two_digits(s + 14),
           se = two_digits(s + 17);
  if (yh > 99 || yl > 99 || mo - 1 > 11 || d - 1 > 30 || h > 23 || mi > 59 || se > 60) return -EINVAL;
  /* the fraction's digits as an integer, then scaled to nanoseconds once
   * (unsigned: past 9 digits it wraps harmlessly and is refused) */
  static const uint32_t frac_scale[10] = {1000000000, 100000000, 10000000, 1000000, 100000, 10000, 1000, 100, 10, 1};
  uint32_t ns = 0;
  size_t i = 19;
  if (s[i] == '.') {
    size_t f = ++i;
    int64_t eight = n - i >= 9 ? eight_digits(s + i) : -1;   /* 8 digits and at least a 'Z' */
    if (eight >= 0) {
      ns = (uint32_t)eight;
      i += 8;
    }
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) ns = ns * 10 + (uint32_t)(s[i] - '0');
    if (i == f || i - f > 9) return -EINVAL;
    ns *= frac_scale[i - f];
  }
  int64_t off = 0;   /* local time = UTC + offset */
  if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
    if (i + 1 != n) return -EINVAL;
  } else {
    if (i + 6 != n || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':') return -EINVAL;
    unsigned oh = two_digits(s + i + 1), om = two_digits(s + i + 4);
    if (oh > 23 || om > 59) return -EINVAL;
    off = s[i] == '+' ? -(int64_t)(oh * 3600 + om * 60) : (int64_t)(oh * 3600 + om * 60);
  }
  *sec = days_from_civil(yh * 100 + yl, mo, d) * 86400 + h * 3600 + mi * 60 + se + off;
  *nsec = ns;
  return 0;
}

int smsg_time_valid(const char *s, size_t n) {
  int64_t sec;
  uint32_t nsec;
  return smsg__time_parse(s, n, &sec, &nsec);
}

int64_t smsg__time_ns(int64_t sec, uint32_t nsec) {
  if (sec > SMSG_TIME_NS_MAX_S) return INT64_MAX;
  if (sec < -SMSG_TIME_NS_MAX_S) return -SMSG_TIME_NS_MAX_S * 1000000000;
  return sec * 1000000000 + nsec;
}
