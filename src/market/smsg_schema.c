/* stream_msg's schema: the field table of each kind (smsg_internal.h) and
 * the small validators of symbols, kinds and RFC 3339 times. */
#include "smsg_internal.h"

#include <errno.h>
#include <string.h>

/* Quotes follow the wire protocol's order (common.md); the other kinds list
 * Alpaca's documented fields with the tape and the time last, like quotes. */
static const field_spec quote_fields[] = {
  {"T", F_TYPE, REQ},   {"S", F_SYMBOL, REQ}, {"bx", F_CODE, REQ}, {"bp", F_PRICE, REQ},
  {"bs", F_UINT, REQ},  {"ax", F_CODE, REQ},  {"ap", F_PRICE, REQ}, {"as", F_UINT, REQ},
  {"c", F_CODES, OPT},  {"z", F_CODE, OPT},   {"t", F_TIME, REQ},
};
static const field_spec trade_fields[] = {
  {"T", F_TYPE, REQ}, {"S", F_SYMBOL, REQ}, {"i", F_UINT, REQ},  {"x", F_CODE, REQ},
  {"p", F_PRICE, REQ}, {"s", F_UINT, REQ},  {"c", F_CODES, OPT}, {"z", F_CODE, OPT},
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
  {"T", F_TYPE, REQ},  {"S", F_SYMBOL, REQ}, {"x", F_CODE, REQ},   {"oi", F_UINT, REQ},
  {"op", F_PRICE, REQ}, {"os", F_UINT, REQ},  {"oc", F_CODES, OPT}, {"ci", F_UINT, REQ},
  {"cp", F_PRICE, REQ}, {"cs", F_UINT, REQ},  {"cc", F_CODES, OPT}, {"z", F_CODE, OPT},
  {"t", F_TIME, REQ},
};
static const field_spec cancel_fields[] = {
  {"T", F_TYPE, REQ}, {"S", F_SYMBOL, REQ}, {"i", F_UINT, REQ}, {"x", F_CODE, REQ},
  {"p", F_PRICE, REQ}, {"s", F_UINT, REQ},  {"a", F_CODE, REQ}, {"z", F_CODE, OPT},
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

unsigned smsg__two_digits(const char *s) {
  unsigned a = (unsigned)(s[0] - '0'), b = (unsigned)(s[1] - '0');
  return a < 10 && b < 10 ? a * 10 + b : 100;
}

/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac]Z|(+|-)HH:MM, with the
 * fraction limited to nanoseconds, which is all any feed sends. Every
 * message carries one: the fixed part is checked without loops. */
int smsg_time_valid(const char *s, size_t n) {
  if (n < 20 || n > SMSG_TIME_MAX) return -EINVAL;
  if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
    return -EINVAL;
  unsigned mo = smsg__two_digits(s + 5), d = smsg__two_digits(s + 8);
  if (smsg__two_digits(s) > 99 || smsg__two_digits(s + 2) > 99 || mo - 1 > 11 || d - 1 > 30 ||
      smsg__two_digits(s + 11) > 23 || smsg__two_digits(s + 14) > 59 || smsg__two_digits(s + 17) > 60)
    return -EINVAL;
  size_t i = 19;
  if (s[i] == '.') {
    size_t f = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == f || i - f > 9) return -EINVAL;
  }
  if (i < n && (s[i] == 'Z' || s[i] == 'z')) return i + 1 == n ? 0 : -EINVAL;
  if (i + 6 != n || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':') return -EINVAL;
  return smsg__two_digits(s + i + 1) <= 23 && smsg__two_digits(s + i + 4) <= 59 ? 0 : -EINVAL;
}
