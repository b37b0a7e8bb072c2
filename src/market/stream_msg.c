/* Alpaca v2 stream messages. Each kind is described once by a table of
 * fields (name, type, required) in the order tickerd publishes them; the
 * same table drives validation, batch error messages and encoding, so the
 * three cannot disagree. The encoder writes JSON itself from the fields the
 * validator found: no lookups, no jansson serializer on the hot path. */
#include "market/stream_msg.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fmt_num.h"
#include "stream_msg_internal.h"
#include "base/jsonw.h"
#include "base/hex.h"

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

#define XSTR(x) STR(x)
#define STR(x) #x

#define REQ true
#define OPT false

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

#define KIND(t, ch, f) {t, ch, f, (int)(sizeof(f) / sizeof(f[0]))}
static const kind_spec kinds[SMSG_KIND_COUNT] = {
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

/* What item_check found wrong, enough to word the batch-mode message. */
typedef struct {
  smsg_skip_reason reason;
  const field_spec *field;   /* NULL for item-level problems */
  const char *type;          /* the offending "T" value, if any */
  bool type_present;         /* SMSG_SKIP_NO_TYPE: "T" there, not a string */
} item_err;

typedef enum { ITEM_BAD = -1, ITEM_DATA = 0, ITEM_CONTROL = 1 } item_class;

/* ---- small validators --------------------------------------------------- */

/* 1 for the bytes a symbol may have: A-Z 0-9 . / - */
static const unsigned char symbol_byte[256] = {
  ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
  ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
  ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
  ['Y'] = 1, ['Z'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
  ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['.'] = 1, ['/'] = 1, ['-'] = 1,
};

bool smsg_symbol_valid(const char *s, size_t n) {
  if (n == 0 || n > TD_SYMBOL_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if (!symbol_byte[(unsigned char)s[i]]) return false;
  return true;
}

const char *smsg_kind_channel(smsg_kind k) {
  return (unsigned)k < SMSG_KIND_COUNT ? kinds[k].channel : NULL;
}

int smsg_kind_from_channel(const char *s, size_t n) {
  for (int k = 0; k < SMSG_KIND_COUNT; k++)
    if (strlen(kinds[k].channel) == n && !memcmp(kinds[k].channel, s, n)) return k;
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

/* RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac]Z|(+|-)HH:MM, with the
 * fraction limited to nanoseconds, which is all any feed sends. Every
 * message carries one: the fixed part is checked without loops. */
int smsg_time_valid(const char *s, size_t n) {
  if (n < 20 || n > SMSG_TIME_MAX) return -EINVAL;
  if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
    return -EINVAL;
  unsigned mo = two_digits(s + 5), d = two_digits(s + 8);
  if (two_digits(s) > 99 || two_digits(s + 2) > 99 || mo - 1 > 11 || d - 1 > 30 ||
      two_digits(s + 11) > 23 || two_digits(s + 14) > 59 || two_digits(s + 17) > 60)
    return -EINVAL;
  size_t i = 19;
  if (s[i] == '.') {
    size_t f = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == f || i - f > 9) return -EINVAL;
  }
  if (i < n && (s[i] == 'Z' || s[i] == 'z')) return i + 1 == n ? 0 : -EINVAL;
  if (i + 6 != n || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':') return -EINVAL;
  return two_digits(s + i + 1) <= 23 && two_digits(s + i + 4) <= 59 ? 0 : -EINVAL;
}

/* ---- item validation ----------------------------------------------------- */

static int item_fail(item_err *e, smsg_skip_reason r, const field_spec *f) {
  e->reason = r;
  e->field = f;
  return ITEM_BAD;
}

static bool code_ok(const json_t *v) {
  return json_string_length(v) <= SMSG_CODE_MAX;
}

static int check_array(const json_t *v, const field_spec *f, item_err *e) {
  if (!json_is_array(v)) return item_fail(e, SMSG_SKIP_TYPE, f);
  size_t n = json_array_size(v);
  size_t max = f->type == F_CODES ? SMSG_MAX_CONDITIONS : SMSG_MAX_NEWS_SYMBOLS;
  for (size_t i = 0; i < n; i++)
    if (!json_is_string(json_array_get(v, i))) return item_fail(e, SMSG_SKIP_TYPE, f);
  if (n > max) return item_fail(e, SMSG_SKIP_RANGE, f);
  for (size_t i = 0; i < n; i++) {
    const json_t *s = json_array_get(v, i);
    if (f->type == F_CODES && !code_ok(s)) return item_fail(e, SMSG_SKIP_RANGE, f);
    if (f->type == F_SYMBOLS && !smsg_symbol_valid(json_string_value(s), json_string_length(s)))
      return item_fail(e, SMSG_SKIP_SYMBOL, f);
  }
  return 0;
}

static int check_field(const json_t *v, const field_spec *f, item_err *e) {
  switch (f->type) {
  case F_TYPE:
    return 0;
  case F_SYMBOL:
    if (!json_is_string(v)) return item_fail(e, SMSG_SKIP_TYPE, f);
    if (!smsg_symbol_valid(json_string_value(v), json_string_length(v)))
      return item_fail(e, SMSG_SKIP_SYMBOL, f);
    return 0;
  case F_CODE:
    if (!json_is_string(v)) return item_fail(e, SMSG_SKIP_TYPE, f);
    return code_ok(v) ? 0 : item_fail(e, SMSG_SKIP_RANGE, f);
  case F_TEXT:
    return json_is_string(v) ? 0 : item_fail(e, SMSG_SKIP_TYPE, f);
  case F_PRICE:
    if (!json_is_number(v)) return item_fail(e, SMSG_SKIP_TYPE, f);
    return json_number_value(v) >= 0 ? 0 : item_fail(e, SMSG_SKIP_RANGE, f);
  case F_UINT:
    if (!json_is_integer(v)) return item_fail(e, SMSG_SKIP_TYPE, f);
    return json_integer_value(v) >= 0 ? 0 : item_fail(e, SMSG_SKIP_RANGE, f);
  case F_TIME:
    if (!json_is_string(v)) return item_fail(e, SMSG_SKIP_TYPE, f);
    return smsg_time_valid(json_string_value(v), json_string_length(v)) == 0
               ? 0
               : item_fail(e, SMSG_SKIP_TIME, f);
  case F_CODES:
  case F_SYMBOLS:
    return check_array(v, f, e);
  }
  return item_fail(e, SMSG_SKIP_TYPE, f);
}

static int kind_of_char(char c) {
  for (int k = 0; k < SMSG_KIND_COUNT; k++)
    if (kinds[k].type[0] == c) return k;
  return -1;
}

static int kind_of(const char *t) {
  return t[0] && !t[1] ? kind_of_char(t[0]) : -1;
}

static int control_of(const char *t) {
  if (!strcmp(t, "success")) return SMSG_CTL_SUCCESS;
  if (!strcmp(t, "error")) return SMSG_CTL_ERROR;
  if (!strcmp(t, "subscription")) return SMSG_CTL_SUBSCRIPTION;
  return -1;
}

static const field_spec type_field = {"T", F_TYPE, REQ};

/* Classifies one item. For market data fills m->kind, m->obj, m->fields and,
 * for kinds with "S", the symbol. For control messages fills c. */
static item_class item_check(const json_t *item, smsg_msg *m, smsg_control *c, item_err *e) {
  if (!json_is_object(item)) return item_fail(e, SMSG_SKIP_NOT_OBJECT, NULL);
  const json_t *t = json_object_get(item, "T");
  e->type_present = t != NULL;
  if (!t || !json_is_string(t)) return item_fail(e, SMSG_SKIP_NO_TYPE, &type_field);
  const char *ts = json_string_value(t);
  int k = kind_of(ts);
  if (k < 0) {
    int ck = control_of(ts);
    e->type = ts;
    if (ck < 0) return item_fail(e, SMSG_SKIP_UNKNOWN_TYPE, NULL);
    const json_t *msg = json_object_get(item, "msg"), *code = json_object_get(item, "code");
    c->kind = (smsg_ctl_kind)ck;
    c->msg = json_is_string(msg) ? json_string_value(msg) : "";
    c->code = json_is_integer(code) ? json_integer_value(code) : 0;
    c->obj = item;
    return ITEM_CONTROL;
  }
  const kind_spec *ks = &kinds[k];
  m->kind = (smsg_kind)k;
  m->channel = ks->channel;
  m->obj = item;
  m->symbol = NULL;
  m->symbol_len = 0;
  for (int i = 0; i < ks->nfields; i++) {
    const field_spec *f = &ks->fields[i];
    const json_t *v = f->type == F_TYPE ? t : json_object_get(item, f->name);
    /* An optional field sent as null is treated as absent. */
    if (v && json_is_null(v) && !f->required) v = NULL;
    m->fields[i] = v;
    if (!v) {
      if (f->required) return item_fail(e, SMSG_SKIP_MISSING, f);
      continue;
    }
    if (check_field(v, f, e) < 0) return ITEM_BAD;
    if (f->type == F_SYMBOL) {
      m->symbol = json_string_value(v);
      m->symbol_len = json_string_length(v);
    }
  }
  return ITEM_DATA;
}

/* News is published once per symbol it names; the others once. */
static size_t deliver(smsg_msg *m, smsg_msg_cb on_msg, void *ud) {
  if (m->kind != SMSG_NEWS) {
    on_msg(ud, m);
    return 1;
  }
  const json_t *syms = NULL;
  for (int i = 0; i < kinds[SMSG_NEWS].nfields; i++)
    if (kinds[SMSG_NEWS].fields[i].type == F_SYMBOLS) syms = m->fields[i];
  size_t n = json_array_size(syms);
  for (size_t i = 0; i < n; i++) {
    const json_t *s = json_array_get(syms, i);
    m->symbol = json_string_value(s);
    m->symbol_len = json_string_length(s);
    on_msg(ud, m);
  }
  return n;
}

/* ---- batch and stream entry points --------------------------------------- */

static const char *type_words(field_type t) {
  switch (t) {
  case F_PRICE: return "a number";
  case F_UINT: return "an integer";
  case F_CODES:
  case F_SYMBOLS: return "an array of strings";
  default: return "a string";
  }
}

static const char *range_words(field_type t) {
  switch (t) {
  case F_PRICE:
  case F_UINT: return "be >= 0";
  case F_CODE: return "be at most " XSTR(SMSG_CODE_MAX) " bytes";
  case F_CODES: return "hold at most " XSTR(SMSG_MAX_CONDITIONS) " codes of at most "
                       XSTR(SMSG_CODE_MAX) " bytes";
  case F_SYMBOLS: return "hold at most " XSTR(SMSG_MAX_NEWS_SYMBOLS) " symbols";
  default: return "be in range";
  }
}

/* Copies a sender's "T" into a message with anything unprintable replaced,
 * so that an error message stays one clean line. */
static void printable(char *out, size_t cap, const char *s) {
  size_t i = 0;
  for (; s[i] && i + 1 < cap; i++) out[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
  out[i] = 0;
}

static void item_err_format(char *err, size_t idx, const item_err *e) {
  const char *f = e->field ? e->field->name : "";
  char t[24];
  switch (e->reason) {
  case SMSG_SKIP_NOT_OBJECT:
    snprintf(err, SMSG_ERR_MAX, "item %zu: not a JSON object", idx);
    break;
  case SMSG_SKIP_NO_TYPE:
    if (e->type_present) {
      snprintf(err, SMSG_ERR_MAX, "item %zu: field \"T\" must be a string", idx);
      break;
    }
    /* fall through */
  case SMSG_SKIP_MISSING:
    snprintf(err, SMSG_ERR_MAX, "item %zu: field \"%s\" is missing", idx, f);
    break;
  case SMSG_SKIP_UNKNOWN_TYPE:
    printable(t, sizeof(t), e->type ? e->type : "");
    snprintf(err, SMSG_ERR_MAX, "item %zu: unknown message type \"%s\"", idx, t);
    break;
  case SMSG_SKIP_CONTROL:
    printable(t, sizeof(t), e->type ? e->type : "");
    snprintf(err, SMSG_ERR_MAX, "item %zu: control message \"%s\" is not market data", idx, t);
    break;
  case SMSG_SKIP_TYPE:
    snprintf(err, SMSG_ERR_MAX, "item %zu: field \"%s\" must be %s", idx, f,
             type_words(e->field->type));
    break;
  case SMSG_SKIP_RANGE:
    snprintf(err, SMSG_ERR_MAX, "item %zu: field \"%s\" must %s", idx, f,
             range_words(e->field->type));
    break;
  case SMSG_SKIP_SYMBOL:
    snprintf(err, SMSG_ERR_MAX, "item %zu: field \"%s\" must %s", idx, f,
             e->field->type == F_SYMBOLS
                 ? "hold symbols of 1-" XSTR(TD_SYMBOL_MAX) " characters A-Z 0-9 . / -"
                 : "be a symbol of 1-" XSTR(TD_SYMBOL_MAX) " characters A-Z 0-9 . / -");
    break;
  case SMSG_SKIP_TIME:
    snprintf(err, SMSG_ERR_MAX, "item %zu: field \"%s\" must be an RFC-3339 timestamp", idx, f);
    break;
  case SMSG_SKIP_COUNT:
    break;
  }
}

/* Parses the buffer once. Returns the root (an array or an object), or NULL
 * with a message in err (when err is not NULL). Batch mode (err set) rejects
 * duplicate keys, which two JSON parsers could read differently; stream mode
 * skips that check, which costs about a third of jansson's parse time, for
 * feeds whose encoder we know. */
static json_t *load(const char *buf, size_t len, char *err) {
  json_error_t je;
  json_t *root = json_loadb(buf, len, err ? JSON_REJECT_DUPLICATES : 0, &je);
  if (!root) {
    if (err)
      snprintf(err, SMSG_ERR_MAX, "invalid JSON: %.100s (line %d, column %d)", je.text, je.line,
               je.column);
    return NULL;
  }
  if (!json_is_array(root) && !json_is_object(root)) {
    if (err) snprintf(err, SMSG_ERR_MAX, "expected a JSON array or object of messages");
    json_decref(root);
    return NULL;
  }
  return root;
}

static size_t item_count(const json_t *root) {
  return json_is_array(root) ? json_array_size(root) : 1;
}

static json_t *item_at(json_t *root, size_t i) {
  return json_is_array(root) ? json_array_get(root, i) : root;
}

static int fast_parse(const char *buf, size_t len, smsg_msg_cb on_msg, void *ud,
                      size_t *delivered);

/* Items read by jansson (smsg_get_tier_stats). */
static uint64_t jansson_items;

int smsg_parse_batch(const char *buf, size_t len, smsg_msg_cb on_msg, void *ud,
                     char err[SMSG_ERR_MAX]) {
  size_t delivered;
  int fast = fast_parse(buf, len, on_msg, ud, &delivered);
  if (fast >= 0) return fast;
  json_t *root = load(buf, len, err);
  if (!root) return -EINVAL;
  size_t n = item_count(root);
  jansson_items += n;
  smsg_msg m;
  smsg_control c;
  item_err e = {0};
  /* All or nothing: every item is checked before the first is delivered. */
  for (size_t i = 0; i < n; i++) {
    item_class ic = item_check(item_at(root, i), &m, &c, &e);
    if (ic == ITEM_CONTROL) e.reason = SMSG_SKIP_CONTROL;
    if (ic != ITEM_DATA) {
      item_err_format(err, i, &e);
      json_decref(root);
      return -EINVAL;
    }
  }
  for (size_t i = 0; i < n; i++) {
    item_check(item_at(root, i), &m, &c, &e);
    m.index = i;
    deliver(&m, on_msg, ud);
  }
  json_decref(root);
  return (int)n;
}

int smsg_parse_stream(const char *buf, size_t len, smsg_msg_cb on_msg, smsg_ctl_cb on_control,
                      void *ud, smsg_stats *st) {
  st->buffers++;
  size_t delivered = 0;
  int fast = fast_parse(buf, len, on_msg, ud, &delivered);
  if (fast >= 0) {
    st->items += (size_t)fast;
    st->delivered += delivered;
    return (int)delivered;
  }
  json_t *root = load(buf, len, NULL);
  if (!root) {
    st->bad_json++;
    return -EINVAL;
  }
  size_t n = item_count(root);
  jansson_items += n;
  smsg_msg m;
  smsg_control c;
  item_err e = {0};
  for (size_t i = 0; i < n; i++) {
    st->items++;
    item_class ic = item_check(item_at(root, i), &m, &c, &e);
    if (ic == ITEM_BAD) {
      st->skipped[e.reason]++;
    } else if (ic == ITEM_CONTROL) {
      if (on_control) {
        st->controls++;
        on_control(ud, &c);
      } else {
        st->skipped[SMSG_SKIP_CONTROL]++;
      }
    } else {
      m.index = i;
      delivered += deliver(&m, on_msg, ud);
    }
  }
  st->delivered += delivered;
  json_decref(root);
  return (int)delivered;
}

/* ---- encoding ------------------------------------------------------------ */

/* Payloads up to this size are built on the stack and copied once into an
 * exactly sized td_buf; quotes are about 200 bytes. */
#define ENC_STACK_BYTES 2048

static char *put_i64(char *o, int64_t v) {
  if (v < 0) {
    *o++ = '-';
    return fmt_u64(o, (uint64_t)0 - (uint64_t)v);
  }
  return fmt_u64(o, (uint64_t)v);
}

static const double pow10_tab[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/* Shortest decimal that reads back as exactly v. Prices have few decimals:
 * find the smallest k <= 9 such that round(v * 10^k) / 10^k == v. Both
 * operands of that division are exact doubles (below 2^53), so the division
 * is correctly rounded exactly like strtod of the decimal text: equality
 * proves the text round-trips. Other values fall back to %.15g..%.17g. */
static char *put_double(char *o, double v) {
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

static char *put_str(char *o, const char *s, size_t n) {
  *o++ = '"';
  o = json_escape(o, s, n);
  *o++ = '"';
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
  if (json_is_string(v)) return put_str(o, json_string_value(v), json_string_length(v));
  if (json_is_integer(v)) return put_i64(o, json_integer_value(v));
  if (json_is_real(v)) return put_double(o, json_real_value(v));
  *o++ = '[';
  size_t n = json_array_size(v);
  for (size_t i = 0; i < n; i++) {
    if (i) *o++ = ',';
    const json_t *s = json_array_get(v, i);
    o = put_str(o, json_string_value(s), json_string_length(s));
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
  const kind_spec *ks = &kinds[m->kind];
  *o++ = '{';
  for (int i = 0; i < ks->nfields; i++) {
    const field_spec *f = &ks->fields[i];
    if (f->type == F_TYPE) {
      o = put_key(o, "T", i == 0);
      o = put_str(o, ks->type, 1);
    } else if (m->fields[i]) {
      o = put_key(o, f->name, i == 0);
      o = put_value(o, m->fields[i]);
    }
  }
  return put_tail(o, seq, epoch);
}

static td_buf *fast_encode(const struct smsg_fast_msg *f, uint64_t seq, const char *epoch);

td_buf *smsg_encode(const smsg_msg *m, uint64_t seq, const char *epoch) {
  if (!m->obj) return fast_encode(m->fast, seq, epoch);
  const kind_spec *ks = &kinds[m->kind];
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

/* ---- fast path: plain market data without a jansson tree ------------------ */

/* Why this exists: callgrind put json_loadb at about 37,000 instructions per
 * quote of a batch and the validation of its tree at 6,500, against 2,400
 * for everything the pipeline does afterwards. Items that are flat objects
 * of plain values (every quote, trade, bar and status Alpaca sends) are read
 * by the scanner of stream_msg_fast.c instead, checked against the same
 * field tables with the same rules, and their payload encoded at once, up to
 * the seq and epoch smsg_encode appends.
 *
 * All items are checked before the first callback, so the fast path can give
 * up anywhere at no cost but time: on anything it does not handle (an escape,
 * a nested object, an exponent, a duplicate key, a control message, an
 * invalid item) the jansson path runs on the whole buffer as it always did,
 * and words every error, counts every skip and makes every control callback.
 * test/fuzz/fuzz_stream_msg.c runs both paths on every input and requires
 * the same callbacks and byte-identical payloads. */

/* What smsg_encode needs of a fast-path message (smsg_msg.fast). */
struct smsg_fast_msg {
  const char *body;                 /* the payload up to ,"seq" */
  size_t body_len;
  char symbol[TD_SYMBOL_MAX + 1];   /* smsg_msg.symbol, NUL-terminated */
};

/* One checked item: its encoded body and where its symbols are. */
typedef struct {
  size_t body_off, body_len;
  const char *syms;   /* "S", or news' "symbols" array ('[' to ']') */
  size_t syms_len;
  size_t nsyms;       /* 1, or the number of news symbols */
  smsg_kind kind;
} fast_item;

/* Bodies and items of a buffer of up to a few dozen quotes (a feed's usual
 * message) fit on the stack; larger buffers allocate once or twice per
 * buffer, never per item. */
#define FAST_STACK_BYTES 8192
#define FAST_STACK_ITEMS 48
/* Items of a large buffer are counted at one per this many bytes when their
 * table is first sized: a quote is about 130 bytes; smaller ones regrow it. */
#define FAST_ITEM_BYTES_MIN 100
/* Room reserved for one compact item's body (see fast_compact_item); a
 * larger item takes the scanner's path, which has no such limit. */
#define FAST_COMPACT_ROOM 1024
/* Every field's value costs at most this much more encoded than in the
 * input: put_double's longest output ("-1.2345678901234567e-308"). */
#define FAST_VALUE_SLACK 40

typedef struct {
  char *body;
  size_t len, cap;
  fast_item *items;
  size_t n, items_cap;
  char body_stack[FAST_STACK_BYTES];
  fast_item items_stack[FAST_STACK_ITEMS];
} fast_out;

/* Test hooks, for the tests that #include this file: fast_disabled runs the
 * jansson path alone; the counters say which path buffers took. */
static bool fast_disabled;
static uint64_t fast_buffers, fast_abandoned, fast_scanned_items;

static void fast_out_init(fast_out *o) {
  o->body = o->body_stack;
  o->len = 0;
  o->cap = FAST_STACK_BYTES;
  o->items = o->items_stack;
  o->n = 0;
  o->items_cap = FAST_STACK_ITEMS;
}

/* The heap tables of the last large buffer, kept for the next one.
 * Allocating and freeing ~200 KiB per POSTed batch let malloc hand the top
 * of the heap back to the kernel (brk) and fault it in again for the next
 * batch: ~150 brk calls and ~15,000 page faults a second under wrk. Tables
 * up to FAST_KEEP_BYTES are kept; a parse nested in a callback finds none
 * and allocates its own. */
#define FAST_KEEP_BYTES (2 * 1024 * 1024)
static struct {
  char *body;
  size_t cap;
  fast_item *items;
  size_t items_cap;
} fast_kept;

/* Heap tables for a buffer of len bytes: the kept ones when large enough. */
static void fast_out_reserve(fast_out *o, size_t len) {
  size_t cap = len + FAST_COMPACT_ROOM;
  size_t nitems = len / FAST_ITEM_BYTES_MIN + FAST_STACK_ITEMS;
  if (fast_kept.body && fast_kept.cap >= cap) {
    o->body = fast_kept.body;
    o->cap = fast_kept.cap;
    fast_kept.body = NULL;
  } else {
    char *b = malloc(cap);
    if (b) {
      o->body = b;
      o->cap = cap;
    }
  }
  if (fast_kept.items && fast_kept.items_cap >= nitems) {
    o->items = fast_kept.items;
    o->items_cap = fast_kept.items_cap;
    fast_kept.items = NULL;
  } else {
    fast_item *it = malloc(nitems * sizeof(*it));
    if (it) {
      o->items = it;
      o->items_cap = nitems;
    }
  }
}

static void fast_out_free(fast_out *o) {
  if (o->body != o->body_stack) {
    if (o->cap <= FAST_KEEP_BYTES && (!fast_kept.body || fast_kept.cap < o->cap)) {
      free(fast_kept.body);
      fast_kept.body = o->body;
      fast_kept.cap = o->cap;
    } else {
      free(o->body);
    }
  }
  if (o->items != o->items_stack) {
    if (o->items_cap * sizeof(fast_item) <= FAST_KEEP_BYTES &&
        (!fast_kept.items || fast_kept.items_cap < o->items_cap)) {
      free(fast_kept.items);
      fast_kept.items = o->items;
      fast_kept.items_cap = o->items_cap;
    } else {
      free(o->items);
    }
  }
}

/* Room for `more` elements of `size` bytes in an array that starts on the
 * stack and moves to the heap when it outgrows it. */
static int fast_grow(void **arr, void *stack, size_t *cap, size_t used, size_t more, size_t size) {
  if (*cap - used >= more) return 0;
  size_t n = *cap * 2 > used + more ? *cap * 2 : used + more;
  void *p = *arr == stack ? malloc(n * size) : realloc(*arr, n * size);
  if (!p) return -1;
  if (*arr == stack) memcpy(p, stack, used * size);
  *arr = p;
  *cap = n;
  return 0;
}

/* The field of `ks` named k[0..n), or -1. Senders mostly keep Alpaca's
 * order, so the search starts after the last field found. */
static int fast_field(const kind_spec *ks, const char *k, size_t n, int hint) {
  for (int j = 0; j < ks->nfields; j++) {
    int i = hint + j < ks->nfields ? hint + j : hint + j - ks->nfields;
    const char *name = ks->fields[i].name;
    if (name[0] != k[0]) continue;   /* an empty key reads its closing quote */
    size_t m = 1;
    while (m < n && name[m] == k[m]) m++;   /* keys hold no NUL: stops at name's */
    if (m == n && name[m] == 0) return i;
  }
  return -1;
}

/* The next string of a value array from p; the scanner made sure the array
 * holds only strings without escapes. */
static const char *fast_elem(const char *p, const char **s, size_t *n) {
  while (*p != '"') p++;
  *s = ++p;
  while (*p != '"') p++;
  *n = (size_t)(p - *s);
  return p + 1;
}

/* Copies n bytes: short runs (keys, codes, prices, symbols) without a call
 * to memcpy, by two overlapping fixed-size moves. */
static inline char *put_bytes(char *o, const char *s, size_t n) {
  if (n > 0 && n < 4) {
    o[0] = s[0];
    o[n / 2] = s[n / 2];
    o[n - 1] = s[n - 1];
  } else if (n >= 8 && n <= 16) {
    uint64_t a, b;
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
    memcpy(o, &a, 8);
    memcpy(o + n - 8, &b, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + n - 4, 4);
    memcpy(o, &a, 4);
    memcpy(o + n - 4, &b, 4);
  } else if (n) {
    memcpy(o, s, n);
  }
  return o + n;
}

/* jansson reads "-0" and "-0.00" as zero, which passes ">= 0". */
static bool fast_nonneg(const smsg_pair *v) {
  if (v->val[0] != '-') return true;
  for (size_t i = 1; i < v->val_len; i++)
    if (v->val[i] != '0' && v->val[i] != '.') return false;
  return true;
}

static bool fast_check_array(const smsg_pair *v, const field_spec *f) {
  if (v->count > (f->type == F_CODES ? SMSG_MAX_CONDITIONS : SMSG_MAX_NEWS_SYMBOLS)) return false;
  const char *p = v->val, *s;
  size_t n;
  for (size_t i = 0; i < v->count; i++) {
    p = fast_elem(p, &s, &n);
    if (f->type == F_CODES ? n > SMSG_CODE_MAX : !smsg_symbol_valid(s, n)) return false;
  }
  return true;
}

/* check_field's rules on a scanned value. */
static bool fast_check(const smsg_pair *v, const field_spec *f) {
  switch (f->type) {
  case F_TYPE:
    return true;
  case F_SYMBOL:
    return v->type == SMSG_V_STRING && smsg_symbol_valid(v->val, v->val_len);
  case F_CODE:
    return v->type == SMSG_V_STRING && v->val_len <= SMSG_CODE_MAX;
  case F_TEXT:
    return v->type == SMSG_V_STRING;
  case F_PRICE:
    return (v->type == SMSG_V_INT || v->type == SMSG_V_REAL) && fast_nonneg(v);
  case F_UINT:
    return v->type == SMSG_V_INT && fast_nonneg(v);
  case F_TIME:
    return v->type == SMSG_V_STRING && smsg_time_valid(v->val, v->val_len) == 0;
  case F_CODES:
  case F_SYMBOLS:
    return v->type == SMSG_V_ARRAY && fast_check_array(v, f);
  }
  return false;
}

/* A real literal (checked >= 0) as put_double prints the double jansson's
 * strtod reads from it. With at most 9 decimals and 15 digits, that is the
 * literal without trailing zeros: put_double tries k = 0, 1, ... decimals
 * and stops at the literal's own k, because two distinct decimals of at most
 * 15 digits are distinct doubles (DBL_DIG) and round(v * 10^k) is exact
 * below 10^15. Anything else is converted. */
static char *fast_put_real(char *o, const char *s, size_t n) {
  if (s[0] == '-') {   /* -0.0 */
    *o++ = '0';
    return o;
  }
  size_t ip = 0;
  while (s[ip] != '.') ip++;
  size_t fl = n - ip - 1;
  while (fl && s[ip + fl] == '0') fl--;
  if (fl <= 9 && ip <= 15 && ip + fl <= 15) {
    return put_bytes(o, s, fl ? ip + 1 + fl : ip);
  }
  char tmp[SMSG_SCAN_NUM_MAX + 1];
  memcpy(tmp, s, n);
  tmp[n] = 0;
  return put_double(o, strtod(tmp, NULL));
}

/* put_value's output for a checked value. */
static char *fast_put_value(char *o, const smsg_pair *v) {
  switch (v->type) {
  case SMSG_V_STRING:   /* no escapes, no control characters: put_str copies */
    *o++ = '"';
    o = put_bytes(o, v->val, v->val_len);
    *o++ = '"';
    return o;
  case SMSG_V_INT:
    if (v->val[0] == '-') {   /* -0 */
      *o++ = '0';
      return o;
    }
    return put_bytes(o, v->val, v->val_len);
  case SMSG_V_REAL:
    return fast_put_real(o, v->val, v->val_len);
  case SMSG_V_ARRAY: {   /* compact: drop whitespace between the strings */
    bool in = false;
    for (size_t i = 0; i < v->val_len; i++) {
      char c = v->val[i];
      if (c == '"') in = !in;
      if (in || (c != ' ' && c != '\t' && c != '\n' && c != '\r')) *o++ = c;
    }
    return o;
  }
  default:
    return o;
  }
}

/* Maps the item's keys to its kind's fields. Gives up on duplicates (batch
 * mode rejects them, stream mode keeps the last: jansson decides). */
static int fast_map(const smsg_item *it, const kind_spec *ks, const smsg_pair **slot,
                    size_t *bound) {
  const smsg_pair *unknown[SMSG_SCAN_MAX_UNKNOWN];
  int nu = 0, hint = 0;
  for (int i = 0; i < it->npairs; i++) {
    const smsg_pair *v = &it->pairs[i];
    int f = fast_field(ks, v->key, v->key_len, hint);
    if (f >= 0) {
      if (slot[f]) return -1;
      slot[f] = v;
      hint = f + 1;
      *bound += v->key_len + v->val_len + FAST_VALUE_SLACK;
      continue;
    }
    for (int u = 0; u < nu; u++)
      if (unknown[u]->key_len == v->key_len && !memcmp(unknown[u]->key, v->key, v->key_len))
        return -1;
    if (nu == SMSG_SCAN_MAX_UNKNOWN) return -1;
    unknown[nu++] = v;
  }
  return 0;
}

/* item_check and encode_into for one scanned item: appends its body and
 * record to `out`, or returns -1 when the jansson path must decide. */
static int fast_item_add(fast_out *out, const smsg_item *it) {
  const smsg_pair *t = NULL;
  for (int i = 0; i < it->npairs && !t; i++)
    if (it->pairs[i].key_len == 1 && it->pairs[i].key[0] == 'T') t = &it->pairs[i];
  if (!t || t->type != SMSG_V_STRING || t->val_len != 1) return -1;
  int k = kind_of_char(t->val[0]);
  if (k < 0) return -1;
  const kind_spec *ks = &kinds[k];
  const smsg_pair *slot[SMSG_MAX_FIELDS] = {0};
  size_t bound = 16;
  if (fast_map(it, ks, slot, &bound) < 0) return -1;
  if (out->cap - out->len < bound &&
      fast_grow((void **)&out->body, out->body_stack, &out->cap, out->len, bound, 1) < 0)
    return -1;
  if (out->n == out->items_cap &&
      fast_grow((void **)&out->items, out->items_stack, &out->items_cap, out->n, 1,
                sizeof(fast_item)) < 0)
    return -1;
  fast_item *fi = &out->items[out->n];
  fi->kind = (smsg_kind)k;
  fi->nsyms = 1;
  char *start = out->body + out->len, *o = start;
  *o++ = '{';
  for (int i = 0; i < ks->nfields; i++) {
    const field_spec *f = &ks->fields[i];
    const smsg_pair *v = slot[i];
    if (v && v->type == SMSG_V_NULL && !f->required) v = NULL;
    if (!v) {
      if (f->required) return -1;
      continue;
    }
    if (!fast_check(v, f)) return -1;
    /* put_key(o, f->name, i == 0) from the sender's key, which equals the
     * name, without strlen. */
    if (i) *o++ = ',';
    *o++ = '"';
    o = put_bytes(o, v->key, v->key_len);
    *o++ = '"';
    *o++ = ':';
    if (f->type == F_TYPE) {   /* put_str(o, ks->type, 1): a letter */
      o[0] = '"';
      o[1] = ks->type[0];
      o[2] = '"';
      o += 3;
    } else {
      o = fast_put_value(o, v);
    }
    if (f->type == F_SYMBOL || f->type == F_SYMBOLS) {
      fi->syms = v->val;
      fi->syms_len = v->val_len;
      if (f->type == F_SYMBOLS) fi->nsyms = v->count;
    }
  }
  fi->body_off = out->len;
  fi->body_len = (size_t)(o - start);
  out->len += fi->body_len;
  out->n++;
  return 0;
}

/* ---- the compact one-pass form ---------------------------------------------
 * Feeds and POSTed batches send items compact and in Alpaca's key order,
 * with plain ASCII strings: {"T":"q","S":"AAPL","bx":"V","bp":189.5,...}.
 * Such an item is validated and encoded here in one pass over its bytes,
 * without the scanner's pair table and the search of every key in the
 * kind's fields (callgrind: 3,400 -> ~1,000 instructions per quote). Keys
 * must come in the table's order, optional fields may be left out; anything
 * else (whitespace, another order, an unknown or repeated key, null, a
 * negative number, an exponent, a non-ASCII or escaped string, news, an
 * invalid value) makes it return NULL having written nothing, and the
 * scanner reads the item as before. What it accepts, fast_item_add accepts
 * with the same output, so the differential fuzzer covers it too. */


/* Test hook: items that took the compact form. */
static uint64_t fast_compact_items;

/* ,"name": of every field but news' as one masked 8-byte word: every such
 * name has at most 2 bytes, so the key is one load and one comparison. */
typedef struct {
  uint64_t word, mask;
  size_t len;
} compact_lit;

static compact_lit compact_lits[SMSG_KIND_COUNT][SMSG_MAX_FIELDS];
static bool compact_lits_ready;

static void compact_lits_init(void) {
  for (int k = 0; k < SMSG_KIND_COUNT; k++) {
    for (int i = 0; i < kinds[k].nfields; i++) {
      char lit[8] = {0};
      size_t n = strlen(kinds[k].fields[i].name);
      compact_lit *c = &compact_lits[k][i];
      if (n + 4 > sizeof(lit)) continue;   /* len 0: never matches (news) */
      lit[0] = ',';
      lit[1] = '"';
      memcpy(lit + 2, kinds[k].fields[i].name, n);
      lit[n + 2] = '"';
      lit[n + 3] = ':';
      unsigned char m[8] = {0};
      memset(m, 0xff, n + 4);
      memcpy(&c->word, lit, 8);
      memcpy(&c->mask, m, 8);
      c->len = n + 4;
    }
  }
  compact_lits_ready = true;
}

/* The byte after ,"name": when the key at p is the field's, else NULL. */
static const char *compact_key(const compact_lit *c, const char *p, const char *e) {
  if (!c->len || e - p <= (ptrdiff_t)c->len) return NULL;
  uint64_t w;
  if (e - p >= 8) {
    memcpy(&w, p, 8);
  } else {
    w = 0;
    memcpy(&w, p, c->len);
  }
  return (w & c->mask) == c->word ? p + c->len : NULL;
}

/* '"', plain bytes, '"' from p: the byte after the closing quote, or NULL. */
static const char *compact_string(const char *p, const char *e, size_t max) {
  if (p == e || *p != '"') return NULL;
  const char *s = ++p;
  while (p < e && smsg__plain[(unsigned char)*p]) p++;
  if (p == e || *p != '"' || (size_t)(p - s) > max) return NULL;
  return p + 1;
}

/* A number as scan_number reads it, but never negative: the end, or NULL.
 * *real says whether it has a fraction. */
static const char *compact_number(const char *p, const char *e, bool *real) {
  const char *s = p;
  if (p < e && *p == '0') {
    p++;
  } else if (p < e && *p >= '1' && *p <= '9') {
    while (p < e && *p >= '0' && *p <= '9') p++;
  } else {
    return NULL;
  }
  size_t int_digits = (size_t)(p - s);
  *real = p < e && *p == '.';
  if (*real) {
    const char *f = ++p;
    while (p < e && *p >= '0' && *p <= '9') p++;
    if (p == f) return NULL;
  } else if (int_digits > SMSG_SCAN_INT_DIGITS_MAX) {
    return NULL;
  }
  if ((size_t)(p - s) > SMSG_SCAN_NUM_MAX || (p < e && (*p == 'e' || *p == 'E'))) return NULL;
  return p;
}

/* ["code",...] without whitespace: the byte after ']', or NULL. */
static const char *compact_codes(const char *p, const char *e) {
  if (p == e || *p++ != '[') return NULL;
  if (p < e && *p == ']') return p + 1;
  for (size_t n = 1; n <= SMSG_MAX_CONDITIONS; n++) {
    if (!(p = compact_string(p, e, SMSG_CODE_MAX)) || p == e) return NULL;
    if (*p == ']') return p + 1;
    if (*p++ != ',') return NULL;
  }
  return NULL;
}

/* A quoted symbol: what compact_string then smsg_symbol_valid accept, as
 * symbol bytes are plain. */
static const char *compact_symbol(const char *p, const char *e) {
  if (p == e || *p != '"') return NULL;
  const char *s = ++p;
  while (p < e && symbol_byte[(unsigned char)*p]) p++;
  size_t n = (size_t)(p - s);
  return p < e && *p == '"' && n >= 1 && n <= TD_SYMBOL_MAX ? p + 1 : NULL;
}

/* A quoted RFC 3339 time. The bytes smsg_time_valid accepts are all plain,
 * so it alone decides once the closing quote is found within its limit. */
static const char *compact_time(const char *p, const char *e) {
  if (p == e || *p != '"') return NULL;
  size_t room = (size_t)(e - p - 1);
  const char *q = memchr(p + 1, '"', room < SMSG_TIME_MAX + 1 ? room : SMSG_TIME_MAX + 1);
  return q && smsg_time_valid(p + 1, (size_t)(q - p - 1)) == 0 ? q + 1 : NULL;
}

/* One value of field f at p, checked: its end, or NULL. */
static const char *compact_value(const field_spec *f, const char *p, const char *e, bool *real) {
  const char *q;
  *real = false;
  switch (f->type) {
  case F_SYMBOL:
    return compact_symbol(p, e);
  case F_CODE:
    return compact_string(p, e, SMSG_CODE_MAX);
  case F_TEXT:
    return compact_string(p, e, FAST_COMPACT_ROOM);
  case F_TIME:
    return compact_time(p, e);
  case F_PRICE:
    return compact_number(p, e, real);
  case F_UINT:
    q = compact_number(p, e, real);
    return *real ? NULL : q;
  case F_CODES:
    return compact_codes(p, e);
  default:   /* F_TYPE is the first key only; F_SYMBOLS is news' */
    return NULL;
  }
}

/* Checks and encodes the item at p ('{') into out, or returns NULL having
 * written nothing. Returns the byte after the item's '}'. */
static const char *fast_compact_item(fast_out *out, const char *p, const char *e) {
  if (e - p < 9 || memcmp(p, "{\"T\":\"", 6) != 0 || p[7] != '"') return NULL;
  int k = kind_of_char(p[6]);
  if (k < 0 || k == SMSG_NEWS) return NULL;
  const kind_spec *ks = &kinds[k];
  if (!compact_lits_ready) compact_lits_init();
  if ((out->cap - out->len < FAST_COMPACT_ROOM &&
       fast_grow((void **)&out->body, out->body_stack, &out->cap, out->len, FAST_COMPACT_ROOM, 1) < 0) ||
      (out->n == out->items_cap &&
       fast_grow((void **)&out->items, out->items_stack, &out->items_cap, out->n, 1, sizeof(fast_item)) < 0))
    return NULL;
  fast_item *fi = &out->items[out->n];
  char *start = out->body + out->len, *o = start, *lim = start + FAST_COMPACT_ROOM;
  o = put_bytes(o, p, 8);   /* {"T":"q" */
  p += 8;
  int i = 1;                /* every kind's table starts with "T" */
  const compact_lit *lits = compact_lits[k];
  while (p < e && *p == ',') {
    const char *v = NULL;
    for (; i < ks->nfields && !(v = compact_key(&lits[i], p, e)); i++)
      if (ks->fields[i].required) return NULL;
    if (!v) return NULL;
    const field_spec *f = &ks->fields[i++];
    bool real;
    const char *end = compact_value(f, v, e, &real);
    if (!end || (size_t)(lim - o) < (size_t)(end - p) + FAST_VALUE_SLACK) return NULL;
    if (f->type == F_SYMBOL) {
      fi->syms = v + 1;
      fi->syms_len = (size_t)(end - v - 2);
    }
    if (real) {
      o = put_bytes(o, p, (size_t)(v - p));   /* ,"key": */
      o = fast_put_real(o, v, (size_t)(end - v));
    } else {
      o = put_bytes(o, p, (size_t)(end - p));
    }
    p = end;
  }
  if (p == e || *p != '}') return NULL;
  for (; i < ks->nfields; i++)
    if (ks->fields[i].required) return NULL;
  fi->kind = (smsg_kind)k;
  fi->nsyms = 1;
  fi->body_off = out->len;
  fi->body_len = (size_t)(o - start);
  out->len += fi->body_len;
  out->n++;
  fast_compact_items++;
  return p + 1;
}

static void fast_set_symbol(smsg_msg *m, struct smsg_fast_msg *fm, const char *s, size_t n) {
  put_bytes(fm->symbol, s, n);   /* checked: 1..TD_SYMBOL_MAX bytes */
  fm->symbol[n] = 0;
  m->symbol_len = n;
}

/* deliver() for every checked item, in order. */
static size_t fast_deliver(const fast_out *out, smsg_msg_cb on_msg, void *ud) {
  struct smsg_fast_msg fm;
  smsg_msg m;
  memset(&m, 0, sizeof(m));
  m.fast = &fm;
  m.symbol = fm.symbol;
  size_t delivered = 0;
  for (size_t i = 0; i < out->n; i++) {
    const fast_item *fi = &out->items[i];
    m.kind = fi->kind;
    m.channel = kinds[fi->kind].channel;
    m.index = i;
    fm.body = out->body + fi->body_off;
    fm.body_len = fi->body_len;
    if (fi->kind != SMSG_NEWS) {
      fast_set_symbol(&m, &fm, fi->syms, fi->syms_len);
      on_msg(ud, &m);
      delivered++;
      continue;
    }
    const char *p = fi->syms, *s;
    size_t n;
    for (size_t j = 0; j < fi->nsyms; j++) {
      p = fast_elem(p, &s, &n);
      fast_set_symbol(&m, &fm, s, n);
      on_msg(ud, &m);
      delivered++;
    }
  }
  return delivered;
}

/* Checks and encodes every item, then delivers them all. Returns the number
 * of items, or -1 having made no callback: the jansson path's turn. */
static int fast_parse(const char *buf, size_t len, smsg_msg_cb on_msg, void *ud,
                      size_t *delivered) {
  if (fast_disabled) return -1;
  fast_out out;
  fast_out_init(&out);
  /* Bodies are about as long as their items: a large buffer gets its room
   * at once rather than by doubling (and copying) from the stack's. */
  if (len > FAST_STACK_BYTES) fast_out_reserve(&out, len);
  smsg_scan sc;
  smsg_item it;
  smsg__scan_init(&sc, buf, len);
  int r;
  for (;;) {
    const char *item = smsg__scan_item_start(&sc), *end;
    if (item && (end = fast_compact_item(&out, item, sc.end))) {
      smsg__scan_item_done(&sc, end);
      continue;
    }
    if ((r = smsg__scan_item(&sc, &it)) != SMSG_SCAN_ITEM) break;
    if (fast_item_add(&out, &it) < 0) {
      r = SMSG_SCAN_GIVE_UP;
      break;
    }
    fast_scanned_items++;
  }
  if (r != SMSG_SCAN_DONE || out.n > INT_MAX) {
    fast_out_free(&out);
    fast_abandoned++;
    return -1;
  }
  fast_buffers++;
  *delivered = fast_deliver(&out, on_msg, ud);
  int n = (int)out.n;
  fast_out_free(&out);
  return n;
}

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

/* ---- reading a published payload back ------------------------------------ */

/* Epochs are written in lower case only, so one value has one spelling. */
void smsg_get_tier_stats(smsg_tier_stats *out) {
  *out = (smsg_tier_stats){.compact_items = fast_compact_items,
                           .scanned_items = fast_scanned_items,
                           .jansson_items = jansson_items,
                           .fast_abandoned = fast_abandoned};
}

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

int smsg_payload_time(const char *p, size_t n, int64_t *sec, uint32_t *nsec) {
  static const char key[] = ",\"t\":\"";
  const size_t klen = sizeof(key) - 1;
  const char *k = memmem(p, n, key, klen);
  if (!k) return -EINVAL;
  const char *t = k + klen, *end = p + n;
  const char *q = memchr(t, '"', (size_t)(end - t));
  if (!q || smsg_time_valid(t, (size_t)(q - t)) != 0) return -EINVAL;
  int64_t days = days_from_civil(two_digits(t) * 100 + two_digits(t + 2), two_digits(t + 5), two_digits(t + 8));
  int64_t s = days * 86400 + two_digits(t + 11) * 3600 + two_digits(t + 14) * 60 + two_digits(t + 17);
  uint32_t ns = 0, scale = 1000000000;
  const char *c = t + 19;
  if (*c == '.')
    for (c++; *c >= '0' && *c <= '9'; c++) ns += (uint32_t)(*c - '0') * (scale /= 10);
  if (*c == '+' || *c == '-') {   /* local time = UTC + offset */
    int64_t off = two_digits(c + 1) * 3600 + two_digits(c + 4) * 60;
    s += *c == '+' ? -off : off;
  }
  *sec = s;
  *nsec = ns;
  return 0;
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
