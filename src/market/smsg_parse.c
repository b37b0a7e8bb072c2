/* stream_msg's entry points and its jansson tier: each buffer goes to the
 * fast tiers first (smsg_fast.c); when they give up, it is parsed once with
 * jansson, every item checked against its kind's table (smsg_schema.c),
 * batch errors worded and stream skips counted. */
#include "smsg_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define XSTR(x) STR(x)
#define STR(x) #x

/* What item_check found wrong, enough to word the batch-mode message. */
typedef struct {
  smsg_skip_reason reason;
  const field_spec *field;   /* NULL for item-level problems */
  const char *type;          /* the offending "T" value, if any */
  bool type_present;         /* SMSG_SKIP_NO_TYPE: "T" there, not a string */
} item_err;

typedef enum { ITEM_BAD = -1, ITEM_DATA = 0, ITEM_CONTROL = 1 } item_class;

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

static int kind_of(const char *t) {
  return t[0] && !t[1] ? smsg__kind_of_char(t[0]) : -1;
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
  const kind_spec *ks = &smsg__kinds[k];
  m->kind = (smsg_kind)k;
  m->channel = ks->channel;
  m->obj = item;
  m->num_set = 0;   /* jansson's values and time are read from its tree */
  m->has_t = false;
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
  for (int i = 0; i < smsg__kinds[SMSG_NEWS].nfields; i++)
    if (smsg__kinds[SMSG_NEWS].fields[i].type == F_SYMBOLS) syms = m->fields[i];
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

/* Items read by the jansson tier (smsg_get_tier_stats). */
uint64_t smsg__jansson_items;

/* Parses the buffer once. Returns the root (an array or an object) with its
 * item count in *n (counted as the jansson tier's), or NULL with a message
 * in err (when err is not NULL). Batch mode (err set) rejects
 * duplicate keys, which two JSON parsers could read differently; stream mode
 * skips that check, which costs about a third of jansson's parse time, for
 * feeds whose encoder we know. */
static json_t *load(const char *buf, size_t len, char *err, size_t *n) {
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
  *n = json_is_array(root) ? json_array_size(root) : 1;
  smsg__jansson_items += *n;
  return root;
}

static json_t *item_at(json_t *root, size_t i) {
  return json_is_array(root) ? json_array_get(root, i) : root;
}

int smsg_parse_batch(const char *buf, size_t len, smsg_msg_cb on_msg, void *ud, char err[SMSG_ERR_MAX]) {
  return smsg_parse_batch_opt(buf, len, 0, on_msg, ud, err);
}

int smsg_parse_batch_opt(const char *buf, size_t len, unsigned opts, smsg_msg_cb on_msg, void *ud,
                         char err[SMSG_ERR_MAX]) {
  size_t delivered;
  int fast = smsg__fast_parse(buf, len, opts, on_msg, ud, &delivered);
  if (fast >= 0) return fast;
  size_t n;
  json_t *root = load(buf, len, err, &n);
  if (!root) return -EINVAL;
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

int smsg_parse_stream(const char *buf, size_t len, smsg_msg_cb on_msg, smsg_ctl_cb on_control, void *ud,
                      smsg_stats *st) {
  return smsg_parse_stream_opt(buf, len, 0, on_msg, on_control, ud, st);
}

int smsg_parse_stream_opt(const char *buf, size_t len, unsigned opts, smsg_msg_cb on_msg, smsg_ctl_cb on_control,
                          void *ud, smsg_stats *st) {
  st->buffers++;
  size_t delivered = 0;
  int fast = smsg__fast_parse(buf, len, opts, on_msg, ud, &delivered);
  if (fast >= 0) {
    st->items += (size_t)fast;
    st->delivered += delivered;
    return (int)delivered;
  }
  size_t n;
  json_t *root = load(buf, len, NULL, &n);
  if (!root) {
    st->bad_json++;
    return -EINVAL;
  }
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
