/* stream_msg: every kind parsed and encoded, every batch error worded,
 * stream-mode skip counters, number formatting, payload positions. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <cmocka.h>

#include "market/smsg_fast.c"

#define EPOCH "9f3a0c1d2e4b5a69"

typedef struct {
  int n;
  smsg_kind kind[16];
  char symbol[16][TD_SYMBOL_MAX + 1];
  char channel[16][16];
  size_t index[16];
  td_buf *payload[16];
  int controls;
  smsg_control ctl;
  char ctl_msg[64];
} capture;

static void on_msg(void *ud, const smsg_msg *m) {
  capture *c = ud;
  assert_true(c->n < 16);
  c->kind[c->n] = m->kind;
  assert_int_equal(strlen(m->symbol), m->symbol_len);
  strcpy(c->symbol[c->n], m->symbol);
  strcpy(c->channel[c->n], m->channel);
  c->index[c->n] = m->index;
  c->payload[c->n] = smsg_encode(m, (uint64_t)c->n + 1, EPOCH);
  assert_non_null(c->payload[c->n]);
  c->n++;
}

static void on_ctl(void *ud, const smsg_control *ctl) {
  capture *c = ud;
  c->controls++;
  c->ctl = *ctl;
  snprintf(c->ctl_msg, sizeof(c->ctl_msg), "%s", ctl->msg);
  c->ctl.msg = c->ctl_msg;
}

static void capture_free(capture *c) {
  for (int i = 0; i < c->n; i++) buf_unref(c->payload[i]);
  memset(c, 0, sizeof(*c));
}

static int batch(const char *s, capture *c, char *err) {
  return smsg_parse_batch(s, strlen(s), on_msg, c, err);
}

static char *payload_str(const td_buf *b) {
  char *s = malloc(b->len + 1);
  memcpy(s, b->data, b->len);
  s[b->len] = 0;
  return s;
}

#define QUOTE_IN                                                                        \
  "{\"T\":\"q\",\"S\":\"AAPL\",\"ax\":\"V\",\"ap\":189.52,\"as\":1,\"bx\":\"V\",\"bp\":189.5," \
  "\"bs\":3,\"c\":[\"R\"],\"t\":\"2026-11-21T20:00:00.123456789Z\",\"z\":\"C\",\"extra\":1,\"seq\":7}"

static void test_quote_payload_exact(void **state) {
  capture c = {0};
  char err[SMSG_ERR_MAX];
  assert_int_equal(batch(QUOTE_IN, &c, err), 1);
  assert_int_equal(c.n, 1);
  assert_int_equal(c.kind[0], SMSG_QUOTE);
  assert_string_equal(c.symbol[0], "AAPL");
  assert_string_equal(c.channel[0], "quotes");
  char *s = payload_str(c.payload[0]);
  /* Alpaca's order, unknown fields and the sender's "seq" dropped. */
  assert_string_equal(s, "{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bp\":189.5,\"bs\":3,\"ax\":\"V\","
                         "\"ap\":189.52,\"as\":1,\"c\":[\"R\"],\"z\":\"C\","
                         "\"t\":\"2026-11-21T20:00:00.123456789Z\",\"seq\":1,\"epoch\":\"" EPOCH "\"}");
  free(s);
  capture_free(&c);
}

static const char *kind_fixtures[SMSG_KIND_COUNT] = {
  [SMSG_QUOTE] = QUOTE_IN,
  [SMSG_TRADE] = "{\"T\":\"t\",\"S\":\"MSFT\",\"i\":96921,\"x\":\"D\",\"p\":126.55,\"s\":1,"
                 "\"t\":\"2021-02-22T15:51:44.208Z\",\"c\":[\"@\",\"I\"],\"z\":\"C\"}",
  [SMSG_BAR] = "{\"T\":\"b\",\"S\":\"SPY\",\"o\":388.985,\"h\":389.13,\"l\":388.975,\"c\":389.12,"
               "\"v\":49378,\"t\":\"2021-02-22T19:15:00Z\",\"n\":461,\"vw\":389.062639}",
  [SMSG_UPDATED_BAR] = "{\"T\":\"u\",\"S\":\"SPY\",\"o\":1,\"h\":2,\"l\":0.5,\"c\":1.5,\"v\":10,"
                       "\"t\":\"2021-02-22T19:15:00Z\"}",
  [SMSG_DAILY_BAR] = "{\"T\":\"d\",\"S\":\"SPY\",\"o\":1,\"h\":2,\"l\":0.5,\"c\":1.5,\"v\":10,"
                     "\"t\":\"2021-02-22T00:00:00-05:00\",\"n\":3,\"vw\":1.25}",
  [SMSG_STATUS] = "{\"T\":\"s\",\"S\":\"AAPL\",\"sc\":\"H\",\"sm\":\"Trading Halt\",\"rc\":\"T12\","
                  "\"rm\":\"Trading Halted; For information requested by NASDAQ\","
                  "\"t\":\"2021-02-22T19:15:00.1Z\",\"z\":\"C\"}",
  [SMSG_LULD] = "{\"T\":\"l\",\"S\":\"IONM\",\"u\":3.44,\"d\":2.86,\"i\":\"B\","
                "\"t\":\"2023-02-01T14:30:01.5Z\",\"z\":\"C\"}",
  [SMSG_CORRECTION] = "{\"T\":\"c\",\"S\":\"EEM\",\"x\":\"M\",\"oi\":52983525033527,\"op\":39.1582,"
                      "\"os\":440000,\"oc\":[\" \",\"7\",\"V\"],\"ci\":52983525034326,\"cp\":39.1809,"
                      "\"cs\":440000,\"cc\":[\" \",\"7\",\"V\"],\"z\":\"B\","
                      "\"t\":\"2023-02-01T14:30:01.123Z\"}",
  [SMSG_CANCEL_ERROR] = "{\"T\":\"x\",\"S\":\"GOOGL\",\"i\":3,\"x\":\"V\",\"p\":95.5,\"s\":100,"
                        "\"a\":\"C\",\"z\":\"C\",\"t\":\"2023-02-01T14:30:01Z\"}",
  [SMSG_NEWS] = "{\"T\":\"n\",\"id\":24918784,\"headline\":\"Tesla \\\"up\\\"\\n\","
                "\"summary\":\"s\",\"author\":\"Benzinga Newsdesk\","
                "\"created_at\":\"2022-01-05T22:00:37Z\",\"updated_at\":\"2022-01-05T22:00:38Z\","
                "\"url\":\"https://example.com/n\",\"content\":\"<p>x</p>\","
                "\"symbols\":[\"TSLA\"],\"source\":\"benzinga\"}",
};

/* Every field of the input comes back with an equal value, the known fields
 * in the table's order, then seq and epoch. */
static void check_round_trip(const char *in, const td_buf *out, smsg_kind k, uint64_t seq) {
  json_t *a = json_loads(in, 0, NULL);
  json_error_t je;
  json_t *b = json_loadb(out->data, out->len, 0, &je);
  assert_non_null(a);
  assert_non_null(b);
  const kind_spec *ks = &smsg__kinds[k];
  const char *prev = out->data;
  for (int i = 0; i < ks->nfields; i++) {
    json_t *va = json_object_get(a, ks->fields[i].name), *vb = json_object_get(b, ks->fields[i].name);
    if (!va) {
      assert_null(vb);
      continue;
    }
    assert_non_null(vb);
    if (json_is_number(va))
      assert_true(json_number_value(va) == json_number_value(vb));
    else
      assert_true(json_equal(va, vb));
    char key[32];
    snprintf(key, sizeof(key), "\"%s\":", ks->fields[i].name);
    const char *at = strstr(prev, key);
    assert_non_null(at);
    prev = at;
  }
  assert_true(json_integer_value(json_object_get(b, "seq")) == (json_int_t)seq);
  assert_string_equal(json_string_value(json_object_get(b, "epoch")), EPOCH);
  assert_true(strstr(prev, "\"seq\":") != NULL);
  json_decref(a);
  json_decref(b);
}

static void test_every_kind(void **state) {
  for (int k = 0; k < SMSG_KIND_COUNT; k++) {
    capture c = {0};
    char err[SMSG_ERR_MAX] = "";
    int rc = batch(kind_fixtures[k], &c, err);
    if (rc != 1) fail_msg("kind %d: %s", k, err);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.kind[0], k);
    assert_string_equal(c.channel[0], smsg_kind_channel((smsg_kind)k));
    check_round_trip(kind_fixtures[k], c.payload[0], (smsg_kind)k, 1);
    capture_free(&c);
  }
  assert_string_equal(smsg_kind_channel(SMSG_UPDATED_BAR), "updatedBars");
  assert_string_equal(smsg_kind_channel(SMSG_CANCEL_ERROR), "cancelErrors");
  assert_null(smsg_kind_channel(SMSG_KIND_COUNT));
  assert_int_equal(smsg_kind_from_channel("lulds", 5), SMSG_LULD);
  assert_int_equal(smsg_kind_from_channel("quote", 5), -1);
}

/* smsg__kind_by_letter and the "T" of each kind's table agree. */
static void test_kind_letters(void **state) {
  int kinds_seen = 0;
  for (int c = 0; c < 256; c++) {
    int k = smsg__kind_of_char((char)c);
    if (k < 0) continue;
    assert_int_equal(smsg__kinds[k].type[0], c);
    kinds_seen++;
  }
  assert_int_equal(kinds_seen, SMSG_KIND_COUNT);
}

static void test_news_per_symbol(void **state) {
  const char *in = "[{\"T\":\"n\",\"id\":1,\"headline\":\"h\",\"created_at\":\"2022-01-05T22:00:37Z\","
                   "\"symbols\":[\"AAPL\",\"BRK.B\"],\"url\":null},"
                   "{\"T\":\"n\",\"id\":2,\"headline\":\"h\",\"created_at\":\"2022-01-05T22:00:37Z\","
                   "\"symbols\":[]}]";
  capture c = {0};
  char err[SMSG_ERR_MAX];
  assert_int_equal(batch(in, &c, err), 2);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.symbol[0], "AAPL");
  assert_string_equal(c.symbol[1], "BRK.B");
  assert_int_equal(c.index[1], 0);
  char *s = payload_str(c.payload[1]);
  assert_null(strstr(s, "\"url\""));   /* null optional field treated as absent */
  assert_non_null(strstr(s, "\"symbols\":[\"AAPL\",\"BRK.B\"]"));
  free(s);
  capture_free(&c);
}

static void test_batch_errors(void **state) {
  static const struct {
    const char *in, *msg;
  } cases[] = {
    {"[" QUOTE_IN ",1]", "item 1: not a JSON object"},
    {"[{\"S\":\"A\"}]", "item 0: field \"T\" is missing"},
    {"[{\"T\":5}]", "item 0: field \"T\" must be a string"},
    {"[" QUOTE_IN "," QUOTE_IN ",{\"T\":\"zz\"}]", "item 2: unknown message type \"zz\""},
    {"{\"T\":\"success\",\"msg\":\"connected\"}", "item 0: control message \"success\" is not market data"},
    {"{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bp\":\"1\",\"bs\":1,\"ax\":\"V\",\"ap\":1,\"as\":1,"
     "\"t\":\"2026-11-21T20:00:00Z\"}", "item 0: field \"bp\" must be a number"},
    {"{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bp\":1,\"bs\":1,\"ax\":\"V\",\"ap\":1,"
     "\"t\":\"2026-11-21T20:00:00Z\"}", "item 0: field \"as\" is missing"},
    {"{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bp\":-1,\"bs\":1,\"ax\":\"V\",\"ap\":1,\"as\":1,"
     "\"t\":\"2026-11-21T20:00:00Z\"}", "item 0: field \"bp\" must be >= 0"},
    {"{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bp\":1,\"bs\":1.5,\"ax\":\"V\",\"ap\":1,\"as\":1,"
     "\"t\":\"2026-11-21T20:00:00Z\"}", "item 0: field \"bs\" must be an integer"},
    {"{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bp\":1,\"bs\":-2,\"ax\":\"V\",\"ap\":1,\"as\":1,"
     "\"t\":\"2026-11-21T20:00:00Z\"}", "item 0: field \"bs\" must be >= 0"},
    {"{\"T\":\"q\",\"S\":\"aapl\",\"bx\":\"V\",\"bp\":1,\"bs\":1,\"ax\":\"V\",\"ap\":1,\"as\":1,"
     "\"t\":\"2026-11-21T20:00:00Z\"}",
     "item 0: field \"S\" must be a symbol of 1-16 characters A-Z 0-9 . / -"},
    {"{\"T\":\"q\",\"S\":7,\"bx\":\"V\",\"bp\":1,\"bs\":1,\"ax\":\"V\",\"ap\":1,\"as\":1,"
     "\"t\":\"2026-11-21T20:00:00Z\"}", "item 0: field \"S\" must be a string"},
    {"{\"T\":\"q\",\"S\":\"A\",\"bx\":\"V\",\"bp\":1,\"bs\":1,\"ax\":\"V\",\"ap\":1,\"as\":1,"
     "\"t\":\"2026-11-21 20:00:00Z\"}", "item 0: field \"t\" must be an RFC-3339 timestamp"},
    {"{\"T\":\"q\",\"S\":\"A\",\"bx\":\"V\",\"bp\":1,\"bs\":1,\"ax\":\"V\",\"ap\":1,\"as\":1,\"c\":[1],"
     "\"t\":\"2026-11-21T20:00:00Z\"}", "item 0: field \"c\" must be an array of strings"},
    {"{\"T\":\"q\",\"S\":\"A\",\"bx\":\"V\",\"bp\":1,\"bs\":1,\"ax\":\"V\",\"ap\":1,\"as\":1,\"c\":\"R\","
     "\"t\":\"2026-11-21T20:00:00Z\"}", "item 0: field \"c\" must be an array of strings"},
    {"{\"T\":\"q\",\"S\":\"A\",\"bx\":\"VVVVVVVVVVVVVVVVV\",\"bp\":1,\"bs\":1,\"ax\":\"V\",\"ap\":1,"
     "\"as\":1,\"t\":\"2026-11-21T20:00:00Z\"}", "item 0: field \"bx\" must be at most 16 bytes"},
    {"{\"T\":\"q\",\"S\":\"A\",\"bx\":\"V\",\"bp\":1,\"bs\":1,\"ax\":\"V\",\"ap\":1,\"as\":1,\"z\":3,"
     "\"t\":\"2026-11-21T20:00:00Z\"}", "item 0: field \"z\" must be a string"},
    {"{\"T\":\"n\",\"id\":1,\"headline\":\"h\",\"created_at\":\"2022-01-05T22:00:37Z\","
     "\"symbols\":[\"ok\"]}", "item 0: field \"symbols\" must hold symbols of 1-16 characters A-Z 0-9 . / -"},
    {"{\"T\":\"t\",\"S\":\"A\",\"i\":1,\"x\":\"V\",\"p\":1,\"s\":1}", "item 0: field \"t\" is missing"},
    {"[1,2", "invalid JSON: ']' expected near end of file (line 1, column 4)"},
    {"\"x\"", "invalid JSON: '[' or '{' expected near '\"x\"' (line 1, column 3)"},
    {"{\"T\":\"q\",\"T\":\"q\"}", "invalid JSON: duplicate object key near '\"T\"' (line 1, column 12)"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    capture c = {0};
    char err[SMSG_ERR_MAX] = "";
    assert_int_equal(batch(cases[i].in, &c, err), -EINVAL);
    assert_int_equal(c.n, 0);   /* nothing delivered */
    if (strcmp(err, cases[i].msg)) fail_msg("case %zu: got '%s' want '%s'", i, err, cases[i].msg);
  }
}

static void test_stream_skips(void **state) {
  const char *in =
      "[" QUOTE_IN ",7,{\"x\":1},{\"T\":\"zz\"},{\"T\":\"q\",\"S\":\"A\"},"
      "{\"T\":\"success\",\"msg\":\"authenticated\"},"
      "{\"T\":\"t\",\"S\":\"a\",\"i\":1,\"x\":\"V\",\"p\":1,\"s\":1,\"t\":\"2021-02-22T15:51:44Z\"},"
      "{\"T\":\"t\",\"S\":\"A\",\"i\":1,\"x\":\"V\",\"p\":true,\"s\":1,\"t\":\"2021-02-22T15:51:44Z\"},"
      "{\"T\":\"t\",\"S\":\"A\",\"i\":1,\"x\":\"V\",\"p\":-1,\"s\":1,\"t\":\"2021-02-22T15:51:44Z\"},"
      "{\"T\":\"t\",\"S\":\"A\",\"i\":1,\"x\":\"V\",\"p\":1,\"s\":1,\"t\":\"2021-02-30\"}," QUOTE_IN "]";
  capture c = {0};
  smsg_stats st = {0};
  assert_int_equal(smsg_parse_stream(in, strlen(in), on_msg, NULL, &c, &st), 2);
  assert_int_equal(c.n, 2);
  assert_int_equal(c.index[1], 10);
  assert_int_equal(st.items, 11);
  assert_int_equal(st.delivered, 2);
  assert_int_equal(st.skipped[SMSG_SKIP_NOT_OBJECT], 1);
  assert_int_equal(st.skipped[SMSG_SKIP_NO_TYPE], 1);
  assert_int_equal(st.skipped[SMSG_SKIP_UNKNOWN_TYPE], 1);
  assert_int_equal(st.skipped[SMSG_SKIP_MISSING], 1);
  assert_int_equal(st.skipped[SMSG_SKIP_CONTROL], 1);
  assert_int_equal(st.skipped[SMSG_SKIP_SYMBOL], 1);
  assert_int_equal(st.skipped[SMSG_SKIP_TYPE], 1);
  assert_int_equal(st.skipped[SMSG_SKIP_RANGE], 1);
  assert_int_equal(st.skipped[SMSG_SKIP_TIME], 1);
  capture_free(&c);

  assert_int_equal(smsg_parse_stream("nope", 4, on_msg, on_ctl, &c, &st), -EINVAL);
  assert_int_equal(st.bad_json, 1);
  assert_int_equal(st.buffers, 2);
  assert_string_equal(smsg_skip_name(SMSG_SKIP_RANGE), "out_of_range");
}

static void test_control_messages(void **state) {
  capture c = {0};
  smsg_stats st = {0};
  const char *in = "[{\"T\":\"error\",\"code\":402,\"msg\":\"auth failed\"}]";
  assert_int_equal(smsg_parse_stream(in, strlen(in), on_msg, on_ctl, &c, &st), 0);
  assert_int_equal(c.controls, 1);
  assert_int_equal(c.ctl.kind, SMSG_CTL_ERROR);
  assert_int_equal(c.ctl.code, 402);
  assert_string_equal(c.ctl_msg, "auth failed");
  in = "{\"T\":\"subscription\",\"trades\":[\"AAPL\"],\"quotes\":[\"AMD\",\"CLDR\"],\"bars\":[]}";
  assert_int_equal(smsg_parse_stream(in, strlen(in), on_msg, on_ctl, &c, &st), 0);
  assert_int_equal(c.ctl.kind, SMSG_CTL_SUBSCRIPTION);
  assert_string_equal(c.ctl_msg, "");
  in = "[{\"T\":\"success\",\"msg\":\"connected\"}]";
  assert_int_equal(smsg_parse_stream(in, strlen(in), on_msg, on_ctl, &c, &st), 0);
  assert_int_equal(c.ctl.kind, SMSG_CTL_SUCCESS);
  assert_string_equal(c.ctl_msg, "connected");
  assert_int_equal(st.controls, 3);
}

static void test_symbols_and_times(void **state) {
  assert_true(smsg_symbol_valid("AAPL", 4));
  assert_true(smsg_symbol_valid("BRK.B", 5));
  assert_true(smsg_symbol_valid("BTC/USD", 7));
  assert_true(smsg_symbol_valid("ABCDEFGHIJKLMNOP", 16));
  assert_false(smsg_symbol_valid("ABCDEFGHIJKLMNOPQ", 17));
  assert_false(smsg_symbol_valid("", 0));
  assert_false(smsg_symbol_valid("aapl", 4));
  assert_false(smsg_symbol_valid("A B", 3));
  assert_false(smsg_symbol_valid("A:B", 3));
  assert_false(smsg_symbol_valid("A\0B", 3));

  const char *good[] = {"2026-11-21T20:00:00Z", "2026-11-21T20:00:00.123456789Z",
                        "2026-11-21t20:00:00z", "2026-11-21T20:00:00+05:30",
                        "2026-11-21T20:00:00.1-04:00", "2016-12-31T23:59:60Z"};
  const char *bad[] = {"2026-11-21T20:00:00", "2026-11-21T20:00:00.Z", "2026-11-21T20:00:00.1234567890Z",
                       "2026-13-21T20:00:00Z", "2026-11-21T24:00:00Z", "2026-11-21T20:00:00+0530",
                       "2026-11-21T20:00:00Zx", "20261121T200000Z", "2026-11-21T20:00:00+05:30x"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    assert_int_equal(smsg_time_valid(good[i], strlen(good[i])), 0);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (smsg_time_valid(bad[i], strlen(bad[i])) == 0) fail_msg("accepted %s", bad[i]);
}

/* smsg__time_parse against timegm and a digit-by-digit fraction, on random
 * times with 0 to 9 fraction digits, either letter case and offsets; and a
 * bad byte at every position of the fraction is refused (the eight-digit
 * step checks every byte it reads). */
static void test_time_parse_random(void **state) {
  srand(17);
  for (int k = 0; k < 20000; k++) {
    struct tm tm = {.tm_year = 70 + rand() % 300, .tm_mon = rand() % 12, .tm_mday = 1 + rand() % 28,
                    .tm_hour = rand() % 24, .tm_min = rand() % 60, .tm_sec = rand() % 60};
    int digits = rand() % 10, oh = rand() % 24, om = rand() % 60, zone = rand() % 3;
    char t[64], frac[16] = "";
    uint32_t want_ns = 0, scale = 1000000000;
    for (int d = 0; d < digits; d++) {
      int v = rand() % 10;
      frac[d] = (char)('0' + v);
      want_ns += (uint32_t)v * (scale /= 10);
    }
    int n = snprintf(t, sizeof(t), "%04d-%02d-%02dT%02d:%02d:%02d%s%s", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, digits ? "." : "", frac);
    int64_t want = (int64_t)timegm(&tm);
    if (zone == 0) n += snprintf(t + n, sizeof(t) - (size_t)n, rand() % 2 ? "Z" : "z");
    else n += snprintf(t + n, sizeof(t) - (size_t)n, "%c%02d:%02d", zone == 1 ? '+' : '-', oh, om);
    if (zone) want += (zone == 1 ? -1 : 1) * (oh * 3600 + om * 60);
    int64_t sec;
    uint32_t ns;
    assert_int_equal(smsg__time_parse(t, (size_t)n, &sec, &ns), 0);
    if (sec != want || ns != want_ns) fail_msg("%s: %lld.%09u, want %lld.%09u", t, (long long)sec, ns, (long long)want, want_ns);
    for (int d = 0; d < digits; d++) {
      char bad[64];
      memcpy(bad, t, (size_t)n);
      bad[20 + d] = (char)(rand() % 2 ? '/' : ':');   /* the bytes either side of the digits */
      if (smsg__time_parse(bad, (size_t)n, &sec, &ns) == 0) fail_msg("accepted %.*s", n, bad);
    }
  }
}

static void test_number_format(void **state) {
  static const struct {
    double v;
    const char *text;
  } exact[] = {
    {189.52, "189.52"}, {189.5, "189.5"}, {100, "100"}, {0.0001, "0.0001"}, {0.5, "0.5"},
    {123456.789, "123456.789"}, {0.000000001, "0.000000001"}, {1e-10, "1e-10"},
    {0.1 + 0.2, "0.30000000000000004"}, {1e20, "1e+20"}, {-2.25, "-2.25"}, {0, "0"},
    {39.1582, "39.1582"}, {389.062639, "389.062639"},
  };
  for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
    char o[40];
    *smsg__put_double(o, exact[i].v) = 0;
    if (strcmp(o, exact[i].text)) fail_msg("%.17g: got %s want %s", exact[i].v, o, exact[i].text);
  }
  /* Pseudo-random prices and arbitrary doubles all read back exactly. */
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    double v = i % 2 ? (double)(x % 10000000) / 100.0 : (double)(x >> 11) * 0x1.0p-53 * 1e6;
    char o[40];
    *smsg__put_double(o, v) = 0;
    if (strtod(o, NULL) != v) fail_msg("%.17g printed as %s", v, o);
  }
}

static void test_string_escapes(void **state) {
  const char *in = "{\"T\":\"s\",\"S\":\"A\",\"sc\":\"H\",\"sm\":\"a\\\"b\\\\c\\u0001\\t\\u00e9\\u2028\","
                   "\"t\":\"2021-02-22T19:15:00Z\"}";
  capture c = {0};
  char err[SMSG_ERR_MAX];
  assert_int_equal(batch(in, &c, err), 1);
  char *s = payload_str(c.payload[0]);
  assert_non_null(strstr(s, "\"sm\":\"a\\\"b\\\\c\\u0001\\t\xc3\xa9\xe2\x80\xa8\""));
  free(s);
  check_round_trip(in, c.payload[0], SMSG_STATUS, 1);
  capture_free(&c);
}

static void test_payload_position(void **state) {
  capture c = {0};
  char err[SMSG_ERR_MAX];
  assert_int_equal(batch(QUOTE_IN, &c, err), 1);
  uint64_t seq = 0, epoch = 0;
  assert_int_equal(smsg_payload_position(c.payload[0]->data, c.payload[0]->len, &seq, &epoch), 0);
  assert_int_equal(seq, 1);
  assert_true(epoch == 0x9f3a0c1d2e4b5a69ull);
  capture_free(&c);
  const char *bad[] = {"", "{}", "{\"seq\":1,\"epoch\":\"9f3a0c1d2e4b5a69\"}",
                       "{\"a\":1,\"seq\":,\"epoch\":\"9f3a0c1d2e4b5a69\"}",
                       "{\"a\":1,\"seq\":1,\"epoch\":\"9F3A0C1D2E4B5A69\"}",
                       "{\"a\":1,\"seq\":1,\"epoch\":\"9f3a0c1d2e4b5a6\"}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(smsg_payload_position(bad[i], strlen(bad[i]), &seq, &epoch), -EINVAL);
  const char *ok = "{\"a\":1,\"seq\":18446744073709551615,\"epoch\":\"0000000000000001\"}";
  assert_int_equal(smsg_payload_position(ok, strlen(ok), &seq, &epoch), 0);
  assert_true(seq == UINT64_MAX);
  assert_true(epoch == 1);
  const char *over = "{\"a\":1,\"seq\":18446744073709551616,\"epoch\":\"0000000000000001\"}";
  assert_int_equal(smsg_payload_position(over, strlen(over), &seq, &epoch), -EINVAL);
}

/* The symbol and time hub.c and quote_store.c read from a payload. */
static void test_payload_symbol_and_time(void **state) {
  capture c = {0};
  char err[SMSG_ERR_MAX];
  assert_int_equal(batch(QUOTE_IN, &c, err), 1);
  const char *sym;
  size_t n;
  assert_int_equal(smsg_payload_symbol(c.payload[0]->data, c.payload[0]->len, &sym, &n), 0);
  assert_int_equal(n, strlen(c.symbol[0]));
  assert_memory_equal(sym, c.symbol[0], n);
  int64_t sec;
  uint32_t ns;
  assert_int_equal(smsg_payload_time(c.payload[0]->data, c.payload[0]->len, &sec, &ns), 0);
  capture_free(&c);
  const char *bad[] = {"", "{\"S\":\"A\"}", "{\"T\":\"q\",\"S\":\"aapl\"}", "{\"T\":\"q\",\"x\":1,\"S\":\"A\"}",
                       "{\"T\":\"q\",\"S\":\"A"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(smsg_payload_symbol(bad[i], strlen(bad[i]), &sym, &n), -EINVAL);
  const char *btc = "{\"T\":\"q\",\"S\":\"BTC/USD\",\"bp\":1}";
  assert_int_equal(smsg_payload_symbol(btc, strlen(btc), &sym, &n), 0);
  assert_int_equal(n, 7);
  /* 2021-02-22T19:15:00Z is 1614021300 s after 1970 (date -d ... +%s) */
  const char *t1 = "{\"a\":1,\"t\":\"2021-02-22T19:15:00.25Z\",\"seq\":1}";
  assert_int_equal(smsg_payload_time(t1, strlen(t1), &sec, &ns), 0);
  assert_true(sec == 1614021300 && ns == 250000000);
  const char *t2 = "{\"a\":1,\"t\":\"2021-02-22T14:15:00.000000001-05:00\"}";
  assert_int_equal(smsg_payload_time(t2, strlen(t2), &sec, &ns), 0);
  assert_true(sec == 1614021300 && ns == 1);
  const char *leap = "{\"t\":\"2024-02-29T00:00:00Z\",\"x\":\"1970-01-01T00:00:00Z\"}";
  assert_int_equal(smsg_payload_time(leap, strlen(leap), &sec, &ns), -EINVAL);  /* "t" must not come first */
  const char *leap2 = "{\"a\":1,\"t\":\"2024-02-29T00:00:00Z\"}";
  assert_int_equal(smsg_payload_time(leap2, strlen(leap2), &sec, &ns), 0);
  assert_true(sec == 1709164800);
  const char *none[] = {"{\"a\":1}", "{\"a\":1,\"t\":\"yesterday\"}", "{\"a\":1,\"t\":\"2021-02-22T19:15:00Z"};
  for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
    assert_int_equal(smsg_payload_time(none[i], strlen(none[i]), &sec, &ns), -EINVAL);
}

static void test_big_news_encodes(void **state) {
  /* Larger than the stack scratch: encoded straight into a td_buf. */
  size_t n = 10000;
  char *body = malloc(n + 512);
  int off = sprintf(body, "{\"T\":\"n\",\"id\":1,\"headline\":\"h\",\"created_at\":\"2022-01-05T22:00:37Z\","
                          "\"symbols\":[\"AAPL\"],\"content\":\"");
  for (size_t i = 0; i < n; i++) body[off++] = (char)('a' + i % 26);
  strcpy(body + off, "\"}");
  capture c = {0};
  char err[SMSG_ERR_MAX];
  assert_int_equal(batch(body, &c, err), 1);
  check_round_trip(body, c.payload[0], SMSG_NEWS, 1);
  capture_free(&c);
  free(body);
}

/* ---- fast path ----------------------------------------------------------- */

/* Both modes on `in` with the fast path allowed or not: return values, batch
 * error, stream counters and every delivery (payloads included). */
typedef struct {
  int batch_rc, stream_rc;
  char err[SMSG_ERR_MAX];
  smsg_stats st;
  capture bc, sc;
} both_modes;

static void run_modes(const char *in, bool fast, both_modes *r) {
  memset(r, 0, sizeof(*r));
  fast_disabled = !fast;
  r->batch_rc = smsg_parse_batch(in, strlen(in), on_msg, &r->bc, r->err);
  r->stream_rc = smsg_parse_stream(in, strlen(in), on_msg, on_ctl, &r->sc, &r->st);
  fast_disabled = false;
}

static void assert_same_capture(const capture *a, const capture *b) {
  assert_int_equal(a->n, b->n);
  assert_int_equal(a->controls, b->controls);
  for (int i = 0; i < a->n; i++) {
    assert_int_equal(a->kind[i], b->kind[i]);
    assert_string_equal(a->symbol[i], b->symbol[i]);
    assert_string_equal(a->channel[i], b->channel[i]);
    assert_int_equal(a->index[i], b->index[i]);
    assert_int_equal(a->payload[i]->len, b->payload[i]->len);
    assert_memory_equal(a->payload[i]->data, b->payload[i]->data, a->payload[i]->len);
  }
}

/* Runs `in` both ways; asserts the fast path took (or gave up on) both
 * buffers as `want_fast` says and that nothing observable differs. */
static void check_paths(const char *in, bool want_fast) {
  both_modes f, s;
  uint64_t fb = fast_buffers, fa = fast_abandoned;
  run_modes(in, true, &f);
  if (fast_buffers - fb != (want_fast ? 2u : 0u) || fast_abandoned - fa != (want_fast ? 0u : 2u))
    fail_msg("fast path %s: %s", want_fast ? "not taken" : "taken", in);
  run_modes(in, false, &s);
  assert_int_equal(f.batch_rc, s.batch_rc);
  assert_int_equal(f.stream_rc, s.stream_rc);
  assert_string_equal(f.err, s.err);
  assert_memory_equal(&f.st, &s.st, sizeof(f.st));
  assert_same_capture(&f.bc, &s.bc);
  assert_same_capture(&f.sc, &s.sc);
  capture_free(&f.bc);
  capture_free(&f.sc);
  capture_free(&s.bc);
  capture_free(&s.sc);
}

#define Q_HEAD "{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bs\":3,\"ax\":\"V\",\"as\":1,\"t\":\"2026-11-21T20:00:00Z\","

static void test_fast_path_taken(void **state) {
  static const char *cases[] = {
    QUOTE_IN,
    "[" QUOTE_IN "," QUOTE_IN "]",
    "[]",
    " \n[ ]\t",
    /* every kind but news from the fixtures, one batch */
    "[{\"T\":\"t\",\"S\":\"MSFT\",\"i\":96921,\"x\":\"D\",\"p\":126.55,\"s\":1,"
    "\"t\":\"2021-02-22T15:51:44.208Z\",\"c\":[\"@\",\"I\"],\"z\":\"C\"},"
    "{\"T\":\"b\",\"S\":\"SPY\",\"o\":388.985,\"h\":389.13,\"l\":388.975,\"c\":389.12,"
    "\"v\":49378,\"t\":\"2021-02-22T19:15:00Z\",\"n\":461,\"vw\":389.062639}]",
    /* prices as a simulated feed prints them, and beyond put_double's short form */
    "[" Q_HEAD "\"bp\":189.50,\"ap\":189.00}," Q_HEAD "\"bp\":0.10,\"ap\":7.0000000000}]",
    Q_HEAD "\"bp\":152.38472615384621,\"ap\":0.1234567891}",
    Q_HEAD "\"bp\":123456789012345.5,\"ap\":1234567890123456}",
    Q_HEAD "\"bp\":-0,\"ap\":-0.000}",
    Q_HEAD "\"bp\":0,\"ap\":0.0,\"c\":[],\"z\":null}",
    /* JSON whitespace anywhere between tokens */
    "[ {\n\"T\" : \"q\" ,\"S\":\"A\",\"bx\":\"V\",\"bp\": 1 ,\"bs\":1,\"ax\":\"V\",\"ap\":2,\"as\":1,"
    "\"c\": [ \"R\" ,\"I\" ] ,\"t\":\"2026-11-21T20:00:00Z\"\r\n}\t]",
    /* unknown keys of every plain kind, valid UTF-8 in them and in text */
    Q_HEAD "\"bp\":1,\"ap\":2,\"seq\":7,\"x\":true,\"y\":false,\"w\":null,\"u\":[\"\xc3\xa9\"],"
    "\"\xe2\x82\xac\":\"\xf0\x9f\x98\x80\"}",
    "{\"T\":\"s\",\"S\":\"AAPL\",\"sc\":\"H\",\"sm\":\"Trading Halt \xc3\xa9\",\"rc\":\"T12\","
    "\"t\":\"2021-02-22T19:15:00.1Z\",\"z\":\"C\"}",
    "{\"T\":\"l\",\"S\":\"IONM\",\"u\":3.44,\"d\":2.86,\"i\":\"B\",\"t\":\"2023-02-01T14:30:01.5Z\"}",
    "{\"T\":\"c\",\"S\":\"EEM\",\"x\":\"M\",\"oi\":52983525033527,\"op\":39.1582,\"os\":440000,"
    "\"oc\":[\" \",\"7\",\"V\"],\"ci\":52983525034326,\"cp\":39.1809,\"cs\":440000,"
    "\"cc\":[\" \",\"7\",\"V\"],\"z\":\"B\",\"t\":\"2023-02-01T14:30:01.123Z\"}",
    "{\"T\":\"x\",\"S\":\"GOOGL\",\"i\":3,\"x\":\"V\",\"p\":95.5,\"s\":100,\"a\":\"C\","
    "\"t\":\"2023-02-01T14:30:01Z\"}",
    /* news: once per symbol, and none for an empty list */
    "[{\"T\":\"n\",\"id\":1,\"headline\":\"h\",\"created_at\":\"2022-01-05T22:00:37Z\","
    "\"symbols\":[\"AAPL\",\"BRK.B\"],\"url\":null},"
    "{\"T\":\"n\",\"id\":2,\"headline\":\"h\",\"created_at\":\"2022-01-05T22:00:37Z\",\"symbols\":[]}]",
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_paths(cases[i], true);
}

/* Items in the compact form (table order, no whitespace, plain strings) are
 * read in one pass; the others by the scanner. Both must give what the
 * jansson path gives. */
#define Q_COMPACT(bp, rest)                                                                 \
  "{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bp\":" bp ",\"bs\":3,\"ax\":\"V\",\"ap\":189.52," \
  "\"as\":1" rest "}"
#define Q_CANON Q_COMPACT("189.5", ",\"c\":[\"R\"],\"z\":\"C\",\"t\":\"2026-11-21T20:00:00.123456789Z\"")

static void check_compact(const char *in, uint64_t want_items, bool want_fast) {
  uint64_t before = fast_compact_items;
  check_paths(in, want_fast);
  /* check_paths parses `in` twice with the fast path allowed */
  if (fast_compact_items - before != 2 * want_items)
    fail_msg("compact items %llu, want %llu: %s", (unsigned long long)(fast_compact_items - before) / 2,
             (unsigned long long)want_items, in);
}

static void test_compact_form(void **state) {
  static const struct {
    const char *in;
    uint64_t compact;
    bool fast;
  } cases[] = {
    {Q_CANON, 1, true},
    {"[" Q_CANON "," Q_CANON "," Q_CANON "]", 3, true},
    {Q_COMPACT("100.00", ",\"t\":\"2026-11-21T20:00:00Z\""), 1, true},            /* no c, z */
    {Q_COMPACT("0", ",\"c\":[],\"t\":\"2026-11-21T20:00:00+05:30\""), 1, true},
    {Q_COMPACT("123456789012345.5", ",\"z\":\"C\",\"t\":\"2026-11-21T20:00:00Z\""), 1, true},
    {Q_COMPACT("0.1234567891", ",\"t\":\"2026-11-21T20:00:00Z\""), 1, true},
    {Q_COMPACT("7.0000000000", ",\"c\":[\"R\",\"I\"],\"t\":\"2026-11-21T20:00:00Z\""), 1, true},
    {"[{\"T\":\"t\",\"S\":\"MSFT\",\"i\":96921,\"x\":\"D\",\"p\":126.55,\"s\":1,\"c\":[\"@\",\"I\"],"
     "\"z\":\"C\",\"t\":\"2021-02-22T15:51:44.208Z\"},"
     "{\"T\":\"b\",\"S\":\"SPY\",\"o\":388.985,\"h\":389.13,\"l\":388.975,\"c\":389.12,\"v\":49378,"
     "\"n\":461,\"vw\":389.062639,\"t\":\"2021-02-22T19:15:00Z\"},"
     "{\"T\":\"u\",\"S\":\"SPY\",\"o\":1,\"h\":2,\"l\":0.5,\"c\":1.5,\"v\":10,\"t\":\"2021-02-22T19:15:00Z\"},"
     "{\"T\":\"s\",\"S\":\"AAPL\",\"sc\":\"H\",\"sm\":\"Trading Halt\",\"rc\":\"T12\",\"z\":\"C\","
     "\"t\":\"2021-02-22T19:15:00.1Z\"},"
     "{\"T\":\"l\",\"S\":\"IONM\",\"u\":3.44,\"d\":2.86,\"i\":\"B\",\"t\":\"2023-02-01T14:30:01.5Z\"},"
     "{\"T\":\"c\",\"S\":\"EEM\",\"x\":\"M\",\"oi\":52983525033527,\"op\":39.1582,\"os\":440000,"
     "\"oc\":[\" \",\"7\",\"V\"],\"ci\":52983525034326,\"cp\":39.1809,\"cs\":440000,"
     "\"cc\":[\" \",\"7\",\"V\"],\"z\":\"B\",\"t\":\"2023-02-01T14:30:01.123Z\"},"
     "{\"T\":\"x\",\"S\":\"GOOGL\",\"i\":3,\"x\":\"V\",\"p\":95.5,\"s\":100,\"a\":\"C\","
     "\"t\":\"2023-02-01T14:30:01Z\"}]", 7, true},
    /* mixed: the scanner reads what the compact form does not take */
    {"[" Q_CANON ", " Q_CANON "," QUOTE_IN "," Q_CANON "]", 3, true},
    {"[" Q_CANON "," Q_COMPACT("1", ",\"c\":[\"R\" ],\"t\":\"2026-11-21T20:00:00Z\"") "]", 1, true},
    /* not the compact form, still the fast path */
    {Q_COMPACT("1", ",\"z\":null,\"t\":\"2026-11-21T20:00:00Z\""), 0, true},
    {Q_COMPACT("-0", ",\"t\":\"2026-11-21T20:00:00Z\""), 0, true},
    {Q_COMPACT("1", ",\"t\":\"2026-11-21T20:00:00Z\",\"c\":[\"R\"],\"z\":\"C\""), 0, true},
    {Q_COMPACT("1", ",\"t\":\"2026-11-21T20:00:00Z\",\"seq\":7"), 0, true},
    {Q_COMPACT("1", ",\"t\":\"2026-11-21T20:00:00Z\" "), 0, true},
    {Q_COMPACT("1", ",\"sm\":\"\xc3\xa9\",\"t\":\"2026-11-21T20:00:00Z\""), 0, true},
    {"{\"T\":\"s\",\"S\":\"AAPL\",\"sc\":\"H\",\"sm\":\"Halt \xc3\xa9\",\"t\":\"2021-02-22T19:15:00Z\"}", 0, true},
    {"{\"T\":\"n\",\"id\":1,\"headline\":\"h\",\"created_at\":\"2022-01-05T22:00:37Z\","
     "\"symbols\":[\"AAPL\"]}", 0, true},
    /* neither: invalid or not handled by the fast path at all */
    {Q_COMPACT("1", ",\"t\":\"2026-11-21T20:00:00Z\",\"t\":\"2026-11-21T20:00:00Z\""), 0, false},
    {Q_COMPACT("1", ",\"c\":[\"R\"],\"c\":[\"R\"],\"t\":\"2026-11-21T20:00:00Z\""), 0, false},
    {Q_COMPACT("1e2", ",\"t\":\"2026-11-21T20:00:00Z\""), 0, false},
    {Q_COMPACT("01", ",\"t\":\"2026-11-21T20:00:00Z\""), 0, false},
    {Q_COMPACT("1", ",\"t\":\"2026-11-21T20:00:00\""), 0, false},
    {Q_COMPACT("1", ",\"z\":\"ABCDEFGHIJKLMNOPQ\",\"t\":\"2026-11-21T20:00:00Z\""), 0, false},
    {Q_COMPACT("1", ""), 0, false},                                                   /* no t */
    {Q_COMPACT("1", ",\"t\":\"2026-11-21T20:00:00Z\",\"T\":\"q\""), 0, false},
    {"{\"T\":\"q\",\"S\":\"aapl\",\"bx\":\"V\",\"bp\":1,\"bs\":3,\"ax\":\"V\",\"ap\":2,\"as\":1,"
     "\"t\":\"2026-11-21T20:00:00Z\"}", 0, false},
    {"{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bp\":1,\"bs\":3.5,\"ax\":\"V\",\"ap\":2,\"as\":1,"
     "\"t\":\"2026-11-21T20:00:00Z\"}", 0, false},
    {"{\"T\":\"q\",\"S\":\"AAPL\",\"b\\u0078\":\"V\",\"bp\":1,\"bs\":3,\"ax\":\"V\",\"ap\":2,\"as\":1,"
     "\"t\":\"2026-11-21T20:00:00Z\"}", 0, false},
    /* both items read, then the stray '}' sends the buffer to jansson */
    {"[" Q_CANON "," Q_COMPACT("1", ",\"t\":\"2026-11-21T20:00:00Z\"}") "]", 2, false},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    check_compact(cases[i].in, cases[i].compact, cases[i].fast);
}

/* A key holding a NUL where a field name ends must not match it. */
static void test_compact_key_with_nul(void **state) {
  static const char in[] = "{\"T\":\"q\",\"S\0\":\"AAPL\"}";
  char err[SMSG_ERR_MAX];
  capture c = {0};
  uint64_t before = fast_compact_items;
  assert_true(smsg_parse_batch(in, sizeof(in) - 1, on_msg, &c, err) < 0);
  assert_int_equal(fast_compact_items, before);
  assert_int_equal(c.n, 0);
}

static void test_fast_path_gives_up(void **state) {
  static const char *cases[] = {
    /* not handled: escapes, exponents, nesting, control messages */
    "{\"T\":\"s\",\"S\":\"A\",\"sc\":\"H\",\"sm\":\"a\\\"b\",\"t\":\"2021-02-22T19:15:00Z\"}",
    Q_HEAD "\"bp\":1e2,\"ap\":2}",
    Q_HEAD "\"bp\":1,\"ap\":2,\"x\":{\"y\":1}}",
    Q_HEAD "\"bp\":1,\"ap\":2,\"x\":[1]}",
    "[{\"T\":\"success\",\"msg\":\"connected\"}]",
    "[" QUOTE_IN ",{\"T\":\"subscription\",\"quotes\":[\"AAPL\"]}]",
    /* invalid items: jansson's path words the error and counts the skip */
    "[" QUOTE_IN "," Q_HEAD "\"bp\":-1,\"ap\":2}]",
    Q_HEAD "\"bp\":1,\"ap\":2,\"bs\":4}",                   /* duplicate key */
    Q_HEAD "\"bp\":1,\"ap\":2,\"x\":1,\"x\":2}",            /* duplicate unknown key */
    Q_HEAD "\"bp\":1,\"ap\":\"2\"}",
    Q_HEAD "\"bp\":1.5}",                                   /* "ap" missing */
    Q_HEAD "\"bp\":1,\"ap\":2,\"c\":[\"R\",\"I\",\"A\",\"B\",\"C\",\"D\",\"E\",\"F\",\"G\","
    "\"H\",\"J\",\"K\",\"L\",\"M\",\"N\",\"O\",\"P\"]}",   /* 17 conditions */
    "[" QUOTE_IN ",7]",
    "[{}]",
    /* nine unknown keys */
    Q_HEAD "\"bp\":1,\"ap\":2,\"a\":1,\"b\":1,\"d\":1,\"e\":1,\"f\":1,\"g\":1,\"h\":1,\"i\":1,\"j\":1}",
    /* what jansson itself rejects or reads differently */
    Q_HEAD "\"bp\":1,\"ap\":2,\"n\":12345678901234567890}",
    Q_HEAD "\"bp\":01,\"ap\":2}",
    Q_HEAD "\"bp\":1.,\"ap\":2}",
    Q_HEAD "\"bp\":.5,\"ap\":2}",
    Q_HEAD "\"bp\":+1,\"ap\":2}",
    Q_HEAD "\"bp\":NaN,\"ap\":2}",
    Q_HEAD "\"bp\":1,\"ap\":2,\"u\":\"\xc3\"}",               /* truncated UTF-8 */
    Q_HEAD "\"bp\":1,\"ap\":2,\"u\":\"\xed\xa0\x80\"}",       /* a surrogate */
    Q_HEAD "\"bp\":1,\"ap\":2,\"u\":\"a\tb\"}",               /* raw control character */
    /* DEL: valid raw, written as \u007f by the encoder (the fuzzer found
     * the fast tiers copying it), in a code, a string and a list of codes */
    Q_HEAD "\"bp\":1,\"ap\":2,\"z\":\"\x7f\"}",
    Q_HEAD "\"bp\":1,\"ap\":2,\"u\":\"a\x7f\"}",
    Q_HEAD "\"bp\":1,\"ap\":2,\"c\":[\"\x7fR\"]}",
    Q_HEAD "\"bp\":1,\"ap\":2,\"x\":tru}",
    "[" QUOTE_IN "] x",
    "[" QUOTE_IN ",]",
    "[" QUOTE_IN,
    "",
    "\"x\"",
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_paths(cases[i], false);
}


/* Counts deliveries and checks each payload against QUOTE_IN's on the
 * jansson path. */
static void count_msg(void *ud, const smsg_msg *m) {
  capture *c = ud;
  td_buf *b = smsg_encode(m, 1, EPOCH);
  capture ref = {0};
  char err[SMSG_ERR_MAX];
  fast_disabled = true;
  assert_int_equal(batch(QUOTE_IN, &ref, err), 1);
  fast_disabled = false;
  td_buf *want = ref.payload[0];   /* encoded with seq 1 too */
  assert_int_equal(b->len, want->len);
  assert_memory_equal(b->data, want->data, b->len);
  assert_int_equal(m->index, (size_t)c->n);
  buf_unref(b);
  capture_free(&ref);
  c->n++;
}

/* Sizes beyond the stack scratch: a 1,000-quote batch, identical both ways. */
static void test_fast_path_large_batch(void **state) {
  size_t n = 1000, cap = n * (sizeof(QUOTE_IN) + 1) + 2, len = 0;
  char *in = malloc(cap);
  in[len++] = '[';
  for (size_t i = 0; i < n; i++) {
    if (i) in[len++] = ',';
    memcpy(in + len, QUOTE_IN, sizeof(QUOTE_IN) - 1);
    len += sizeof(QUOTE_IN) - 1;
  }
  in[len++] = ']';
  in[len] = 0;
  uint64_t fb = fast_buffers;
  smsg_stats st = {0};
  capture c = {0};
  /* capture holds 16 deliveries: count with a callback of its own instead */
  assert_int_equal(smsg_parse_stream(in, len, count_msg, NULL, &c, &st), (int)n);
  assert_int_equal(fast_buffers - fb, 1);
  assert_int_equal(c.n, (int)n);
  assert_int_equal(st.items, n);
  free(in);
}

/* smsg_msg_number and smsg_msg_time read back what each tier parsed: the
 * compact form, the scanner (keys out of order) and jansson (fast path off)
 * agree with the encoded payload's time and with the literals sent. */
typedef struct {
  int n;
  double p, s;
  int64_t t_ns, payload_t_ns;
  int no_such;
} numbers_seen;

static void on_numbers(void *ud, const smsg_msg *m) {
  numbers_seen *r = ud;
  r->n++;
  double v;
  assert_int_equal(smsg_msg_number(m, SMSG_F_TRADE_P, &r->p), 0);
  assert_int_equal(smsg_msg_number(m, SMSG_F_TRADE_S, &r->s), 0);
  assert_int_equal(smsg_msg_time(m, &r->t_ns), 0);
  /* another kind's constants, even at the same index as a trade's number */
  r->no_such = (smsg_msg_number(m, SMSG_F_QUOTE_BP, &v) == -ENOENT) + (smsg_msg_number(m, SMSG_F_CANCEL_P, &v) == -ENOENT);
  td_buf *b = smsg_encode(m, 1, "0123456789abcdef");
  int64_t sec;
  uint32_t ns;
  assert_int_equal(smsg_payload_time(b->data, b->len, &sec, &ns), 0);
  r->payload_t_ns = smsg__time_ns(sec, ns);
  buf_unref(b);
}

static void test_msg_numbers(void **state) {
  const char *in[] = {
    "[{\"T\":\"t\",\"S\":\"AAPL\",\"i\":7,\"x\":\"V\",\"p\":189.125,\"s\":300,\"t\":\"2021-02-22T14:15:00.000000001-05:00\"}]",
    "[{\"S\":\"AAPL\",\"T\":\"t\",\"t\":\"2021-02-22T14:15:00.000000001-05:00\",\"s\":300,\"p\":189.125,\"i\":7,\"x\":\"V\"}]",
  };
  for (size_t k = 0; k < 2; k++)
    for (int fast = 1; fast >= 0; fast--) {
      numbers_seen r = {0};
      char err[SMSG_ERR_MAX];
      uint64_t compact = fast_compact_items, scanned = fast_scanned_items, jansson = smsg__jansson_items;
      fast_disabled = !fast;
      assert_int_equal(smsg_parse_batch(in[k], strlen(in[k]), on_numbers, &r, err), 1);
      fast_disabled = false;
      /* the tier meant: compact, scanned, or jansson */
      assert_int_equal(fast_compact_items - compact, fast && k == 0);
      assert_int_equal(fast_scanned_items - scanned, fast && k == 1);
      assert_int_equal(smsg__jansson_items - jansson, !fast);
      assert_int_equal(r.n, 1);
      assert_true(r.p == 189.125 && r.s == 300);
      assert_true(r.t_ns == 1614021300LL * 1000000000 + 1);
      assert_true(r.t_ns == r.payload_t_ns);
      assert_int_equal(r.no_such, 2);   /* a trade has no "bp", nor a cancel's "p" */
    }
  /* years RFC 3339 allows but int64_t nanoseconds do not hold: the nearest
   * representable time in every tier, not an overflow */
  const struct {
    const char *t;
    int64_t ns;
  } far[] = {{"9999-12-31T23:59:59Z", INT64_MAX},
             {"0001-01-01T00:00:00Z", -SMSG_TIME_NS_MAX_S * 1000000000},
             {"2262-01-01T00:00:00Z", 9214646400LL * 1000000000}};
  for (size_t k = 0; k < sizeof(far) / sizeof(far[0]); k++)
    for (int fast = 1; fast >= 0; fast--) {
      char buf[256];
      snprintf(buf, sizeof(buf), "[{\"T\":\"t\",\"S\":\"A\",\"i\":1,\"x\":\"V\",\"p\":1,\"s\":1,\"t\":\"%s\"}]",
               far[k].t);
      numbers_seen r = {0};
      char err[SMSG_ERR_MAX];
      fast_disabled = !fast;
      assert_int_equal(smsg_parse_batch(buf, strlen(buf), on_numbers, &r, err), 1);
      fast_disabled = false;
      assert_true(r.t_ns == far[k].ns);
    }
  /* the literal's value is strtod's, in the fast case (<= 15 digits) and past it */
  const char *lits[] = {"0", "0.1", "7", "189.125", "0.000000001", "123456789012.345", "999999999999999",
                        "1234567890123456.5", "0.30000000000000004", "100.10", "-0.0", "12.5e2"};
  for (size_t k = 0; k < sizeof(lits) / sizeof(lits[0]); k++)
    for (int fast = 1; fast >= 0; fast--) {
      char buf[256];
      snprintf(buf, sizeof(buf), "[{\"T\":\"t\",\"S\":\"A\",\"i\":1,\"x\":\"V\",\"p\":%s,\"s\":1,"
               "\"t\":\"2021-02-22T19:15:00Z\"}]", lits[k]);
      numbers_seen r = {0};
      char err[SMSG_ERR_MAX];
      fast_disabled = !fast;
      int rc = smsg_parse_batch(buf, strlen(buf), on_numbers, &r, err);
      fast_disabled = false;
      assert_int_equal(rc, 1);
      double want = strtod(lits[k], NULL);
      assert_memory_equal(&r.p, &want, sizeof(want));
    }
}

/* SMSG_OPT_NUMBERS: the values the fast tiers keep while checking the
 * literals are the values smsg_msg_number reads again from the literals
 * without it, bit for bit, and strtod's: Clinger's fast path up to 15
 * digits, strtod past them. Trades' "p", "s", "i" and quotes' "bp", "ap",
 * each literal in the compact form, the scanner's (keys out of order) and
 * jansson's (an exponent; the fast path off), in batch and stream mode. */
typedef struct {
  int n;
  bool kept;          /* the parse kept the values (the fast tiers) */
  double v[3];
} kept_seen;

static void on_kept(void *ud, const smsg_msg *m) {
  kept_seen *r = ud;
  r->n++;
  r->kept = m->num_set != 0;
  static const smsg_field trade[] = {SMSG_F_TRADE_P, SMSG_F_TRADE_S, SMSG_F_TRADE_I};
  static const smsg_field quote[] = {SMSG_F_QUOTE_BP, SMSG_F_QUOTE_AP};
  const smsg_field *f = m->kind == SMSG_TRADE ? trade : quote;
  for (int i = 0; i < (m->kind == SMSG_TRADE ? 3 : 2); i++) assert_int_equal(smsg_msg_number(m, f[i], &r->v[i]), 0);
}

static void parse_kept(const char *buf, unsigned opts, bool stream, kept_seen *r) {
  memset(r, 0, sizeof(*r));
  if (stream) {
    smsg_stats st = {0};
    assert_int_equal(smsg_parse_stream_opt(buf, strlen(buf), opts, on_kept, NULL, r, &st), 1);
  } else {
    char err[SMSG_ERR_MAX];
    assert_int_equal(smsg_parse_batch_opt(buf, strlen(buf), opts, on_kept, r, err), 1);
  }
  assert_int_equal(r->n, 1);
}

static void test_kept_numbers(void **state) {
  static const char *prices[] = {
    "0", "0.1", "0.2", "0.3", "7", "4.35", "1.005", "100.01", "189.125", "100.10", "0.000000001",
    "123456789012.345", "999999999999999", "99999999999999.9", "999999999999999.9", "1234567890123456.5",
    "0.30000000000000004", "0.1000000000000000055511151231257827", "9007199254740993", "-0", "-0.0",
    "-0.000", "12.5e2", "1E3", "0.5e-1",
  };
  static const char *ints[] = {"0", "1", "300", "-0", "999999999999999", "9007199254740993",
                               "123456789012345678", "4294967297"};
  size_t np = sizeof(prices) / sizeof(prices[0]), ni = sizeof(ints) / sizeof(ints[0]);
  for (size_t k = 0; k < np; k++)
    for (int form = 0; form < 3; form++) {
      const char *pl = prices[k], *sl = ints[k % ni], *il = ints[(k + 3) % ni], *ql = prices[(k + 7) % np];
      char buf[512];
      if (form == 0)   /* Alpaca's order: the compact form, unless a '-' (the scanner) */
        snprintf(buf, sizeof(buf), "[{\"T\":\"t\",\"S\":\"A\",\"i\":%s,\"x\":\"V\",\"p\":%s,\"s\":%s,"
                 "\"t\":\"2021-02-22T19:15:00Z\"}]", il, pl, sl);
      else if (form == 1)   /* out of order: the scanner */
        snprintf(buf, sizeof(buf), "{\"S\":\"A\",\"T\":\"t\",\"s\":%s, \"p\":%s,\"i\":%s,\"x\":\"V\","
                 "\"t\":\"2021-02-22T19:15:00Z\"}", sl, pl, il);
      else
        snprintf(buf, sizeof(buf), "[{\"T\":\"q\",\"S\":\"A\",\"bx\":\"V\",\"bp\":%s,\"bs\":1,\"ax\":\"V\","
                 "\"ap\":%s,\"as\":1,\"t\":\"2021-02-22T19:15:00Z\"}]", pl, ql);
      const char *lit[3] = {pl, form == 2 ? ql : sl, il};
      int nv = form == 2 ? 2 : 3;
      bool exponent = false;
      for (int i = 0; i < nv; i++) exponent = exponent || strpbrk(lit[i], "eE");
      for (int stream = 0; stream < 2; stream++)
        for (int fast = 1; fast >= 0; fast--) {
          kept_seen plain, kept;
          uint64_t compact = fast_compact_items;
          fast_disabled = !fast;
          parse_kept(buf, 0, stream, &plain);
          parse_kept(buf, SMSG_OPT_NUMBERS, stream, &kept);
          fast_disabled = false;
          bool fast_tier = fast && !exponent;
          assert_false(plain.kept);
          assert_int_equal(kept.kept, fast_tier);
          bool minus = false;
          for (int i = 0; i < nv; i++) minus = minus || lit[i][0] == '-';
          /* both parses of Alpaca's order without a '-' took the compact form */
          assert_int_equal(fast_compact_items - compact, 2 * (fast_tier && form != 1 && !minus));
          for (int i = 0; i < nv; i++) {
            double want = strtod(lit[i], NULL);
            /* kept and read again: the same bits */
            assert_memory_equal(&kept.v[i], &plain.v[i], sizeof(double));
            if (fast_tier || strchr(lit[i], '.') || strpbrk(lit[i], "eE")) {
              assert_memory_equal(&kept.v[i], &want, sizeof(double));
            } else {   /* jansson's integers: its long long, "-0" as 0 */
              assert_true(kept.v[i] == want);
            }
          }
        }
    }
}

/* Each smsg_field constant names the field it is meant to: its kind's
 * table has that name and a number type at that index. */
static void test_field_constants(void **state) {
  static const struct {
    smsg_field f;
    const char *name;
  } want[] = {
    {SMSG_F_QUOTE_BP, "bp"},      {SMSG_F_QUOTE_AP, "ap"},      {SMSG_F_TRADE_P, "p"},
    {SMSG_F_TRADE_S, "s"},        {SMSG_F_CORRECTION_OP, "op"}, {SMSG_F_CORRECTION_OS, "os"},
    {SMSG_F_CORRECTION_CP, "cp"}, {SMSG_F_CORRECTION_CS, "cs"}, {SMSG_F_CANCEL_P, "p"},
    {SMSG_F_CANCEL_S, "s"},       {SMSG_F_TRADE_I, "i"},        {SMSG_F_CORRECTION_OI, "oi"},
    {SMSG_F_CANCEL_I, "i"},
  };
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    const kind_spec *ks = &smsg__kinds[want[i].f >> 8];
    int k = SMSG_FIELD_INDEX(want[i].f);
    assert_true(k < ks->nfields);
    assert_string_equal(ks->fields[k].name, want[i].name);
    assert_true(ks->fields[k].type == F_PRICE || ks->fields[k].type == F_UINT);
  }
  /* no table has a hole a misplaced constant would leave */
  for (int kind = 0; kind < SMSG_KIND_COUNT; kind++)
    for (int i = 0; i < smsg__kinds[kind].nfields; i++) assert_non_null(smsg__kinds[kind].fields[i].name);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_field_constants),     cmocka_unit_test(test_time_parse_random),
    cmocka_unit_test(test_quote_payload_exact), cmocka_unit_test(test_every_kind),
    cmocka_unit_test(test_kind_letters), cmocka_unit_test(test_compact_form),        cmocka_unit_test(test_compact_key_with_nul),
    cmocka_unit_test(test_news_per_symbol),     cmocka_unit_test(test_batch_errors),
    cmocka_unit_test(test_stream_skips),        cmocka_unit_test(test_control_messages),
    cmocka_unit_test(test_symbols_and_times),   cmocka_unit_test(test_number_format),
    cmocka_unit_test(test_string_escapes),      cmocka_unit_test(test_payload_position),
    cmocka_unit_test(test_payload_symbol_and_time),
    cmocka_unit_test(test_big_news_encodes),    cmocka_unit_test(test_fast_path_taken),
    cmocka_unit_test(test_fast_path_gives_up),  cmocka_unit_test(test_fast_path_large_batch),
    cmocka_unit_test(test_msg_numbers),
    cmocka_unit_test(test_kept_numbers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
