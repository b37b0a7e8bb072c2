/* alpaca: the stream client against the fake server: messages delivered by
 * kind, bad credentials -> long backoff, dropped connections -> reconnect
 * and re-subscribe, fragmented frames, server pings, oversize and invalid
 * frames -> logged, counted, reconnected; a certificate for the wrong host;
 * the news stream; configuration errors; secrets never in the log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "market/alpaca.c"
#include "fake_alpaca.h"
#include "base/log.h"

#define SECRET "testsecret"

typedef struct {
  uv_loop_t loop;
  fake_server f;
  td_config cfg;
  alpaca *a;
  uint64_t by_kind[SMSG_KIND_COUNT];
  char symbols[256];
  bool stopped;
  char log_path[300];
} env;

static void on_msg(void *ud, const smsg_msg *m) {
  env *e = ud;
  e->by_kind[m->kind]++;
  if (strlen(e->symbols) + m->symbol_len + 2 < sizeof(e->symbols) && !strstr(e->symbols, m->symbol)) {
    strcat(e->symbols, m->symbol);
    strcat(e->symbols, " ");
  }
}

/* Loads a config as tickerd would from these flags and credentials. */
static int load_cfg(td_config *cfg, const char *const *flags, const char *key, const char *secret) {
  char *argv[32];
  int argc = 0;
  argv[argc++] = "tickerd";
  for (int i = 0; flags[i] && argc < 31; i++) argv[argc++] = (char *)flags[i];
  char kv[128], sv[128];
  snprintf(kv, sizeof(kv), "APCA_API_KEY_ID=%s", key ? key : "");
  snprintf(sv, sizeof(sv), "APCA_API_SECRET_KEY=%s", secret ? secret : "");
  char *const envv[] = {kv, sv, NULL};
  return cfg_load_env(cfg, argc, argv, envv);
}

static void env_start(env *e, const char *cert, const char *const *fake_args, bool news) {
  memset(e, 0, sizeof(*e));
  uv_loop_init(&e->loop);
  snprintf(e->log_path, sizeof(e->log_path), "%s/tickerd.log", fake_ca_dir());
  unlink(e->log_path);
  assert_int_equal(log_open(e->log_path, "debug"), 0);
  log_set_stdout(false);
  assert_int_equal(fake_start(&e->f, cert, fake_args), 0);
  char url[128], nurl[128];
  snprintf(url, sizeof(url), "wss://127.0.0.1:%d/v2/test", e->f.ws_port);
  snprintf(nurl, sizeof(nurl), "wss://127.0.0.1:%d/v1beta1/news", e->f.ws_port);
  const char *flags[] = {"--feed", "alpaca", "--alpaca-url", url, "--ca-file", fake_path("ca.pem"),
                         "--symbols", "AAPL,MSFT", "--alpaca-channels",
                         "quotes,trades,bars,statuses", "--alpaca-news-url", nurl,
                         news ? "--alpaca-news" : NULL, news ? "true" : NULL, NULL};
  assert_int_equal(load_cfg(&e->cfg, flags, "testkey", SECRET), 0);
  const char *err = NULL;
  assert_int_equal(alpaca_new(&e->loop, alpaca_opts_of(&e->cfg), on_msg, e, &e->a, &err), 0);
  assert_null(err);
  assert_int_equal(alpaca_start(e->a), 0);
}

static void on_stopped(void *ud) { ((env *)ud)->stopped = true; }

/* Stops the client, checks it freed itself, and that the log never held
 * the secret. Returns the log's text (caller frees). */
static char *env_finish(env *e);

static char *env_stop(env *e) {
  alpaca_stop(e->a, on_stopped, e);
  assert_true(run_until(&e->loop, &e->stopped, 10000));
  return env_finish(e);
}

/* After the client stopped: the loop, the fake, the log's text. */
static char *env_finish(env *e) {
  run_to_end(&e->loop);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  fake_stop(&e->f);
  cfg_free(&e->cfg);
  log_close();
  FILE *fp = fopen(e->log_path, "r");
  assert_non_null(fp);
  static char text[1 << 20];
  size_t n = fread(text, 1, sizeof(text) - 1, fp);
  fclose(fp);
  text[n] = 0;
  if (getenv("TD_SHOW_LOG")) fputs(text, stderr);
  assert_null(strstr(text, SECRET));
  return text;
}

/* ---- waiting on a condition ------------------------------------------------ */

typedef bool (*pred_fn)(env *e);
typedef struct {
  env *e;
  pred_fn pred;
  bool done;
} waiter;

static void on_poll(uv_timer_t *t) {
  waiter *w = t->data;
  if (w->pred(w->e)) {
    w->done = true;
    uv_stop(t->loop);
  }
}

static bool wait_for(env *e, pred_fn pred, int ms) {
  waiter w = {e, pred, false};
  uv_timer_t t;
  uv_timer_init(&e->loop, &t);
  t.data = &w;
  uv_timer_start(&t, on_poll, 5, 5);
  bool ok = run_until(&e->loop, &w.done, ms);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&e->loop, UV_RUN_NOWAIT);
  return ok;
}

static alpaca_stats stats(env *e) {
  alpaca_stats st;
  alpaca_get_stats(e->a, ALPACA_STREAM_DATA, &st);
  return st;
}

/* ---- tests ----------------------------------------------------------------- */

static bool got_24(env *e) { return stats(e).messages_total >= 24; }

static void test_happy_path(void **state) {
  env e;
  const char *args[] = {"--batches", "3", NULL};
  env_start(&e, "server", args, false);
  assert_true(wait_for(&e, got_24, 10000));
  alpaca_stats st = stats(&e);
  /* 3 batches x 2 symbols x (quotes, trades, bars, statuses). */
  assert_int_equal(st.messages_total, 24);
  assert_int_equal(st.messages[SMSG_QUOTE], 6);
  assert_int_equal(st.messages[SMSG_TRADE], 6);
  assert_int_equal(st.messages[SMSG_BAR], 6);
  assert_int_equal(st.messages[SMSG_STATUS], 6);
  assert_int_equal(e.by_kind[SMSG_QUOTE], 6);
  assert_int_equal(e.by_kind[SMSG_STATUS], 6);
  assert_string_equal(e.symbols, "AAPL MSFT ");
  assert_int_equal(st.state, ALPACA_STREAMING);
  assert_int_equal(st.sessions, 1);
  assert_int_equal(st.connects, 1);
  assert_int_equal(st.reconnects, 0);
  assert_int_equal(st.parse.controls, 3); /* connected, authenticated, subscription */
  assert_true(st.last_message_ms > 0);
  char *log = env_stop(&e);
  assert_non_null(strstr(log, "\"alpaca_subscribed\""));
  assert_non_null(strstr(log, "\"quotes\":2"));
}

static bool in_backoff_after_error(env *e) {
  alpaca_stats st = stats(e);
  return st.state == ALPACA_BACKOFF && st.errors[alpaca_error_index(402)] > 0;
}

static void test_bad_credentials_back_off(void **state) {
  env e;
  const char *args[] = {"--mode", "badauth", NULL};
  env_start(&e, "server", args, false);
  assert_true(wait_for(&e, in_backoff_after_error, 10000));
  alpaca_stats st = stats(&e);
  assert_int_equal(st.errors[alpaca_error_index(402)], 1);
  assert_int_equal(st.sessions, 0);
  assert_int_equal(st.messages_total, 0);
  /* The long delay, jittered down to half at most. */
  assert_true(st.backoff_ms >= ALPACA_BACKOFF_LONG_MS / 2);
  assert_true(st.backoff_ms <= ALPACA_BACKOFF_LONG_MS);
  char *log = env_stop(&e);
  assert_non_null(strstr(log, "\"event\":\"alpaca_error\""));
  assert_non_null(strstr(log, "\"code\":402"));
  assert_non_null(strstr(log, "\"name\":\"auth failed\""));
  assert_non_null(strstr(log, "\"event\":\"alpaca_backoff\""));
}

static bool two_sessions(env *e) {
  alpaca_stats st = stats(e);
  return st.sessions >= 2 && st.messages_total >= 6;
}

static void test_drop_reconnects_and_resubscribes(void **state) {
  env e;
  const char *args[] = {"--mode", "drop", "--drop-after", "3", NULL};
  env_start(&e, "server", args, false);
  /* The fake sends data only after a subscribe: a second session's data
   * proves re-authentication and re-subscription. */
  assert_true(wait_for(&e, two_sessions, 10000));
  alpaca_stats st = stats(&e);
  assert_true(st.reconnects >= 1);
  assert_true(st.messages[SMSG_QUOTE] >= 6);
  assert_int_equal(st.last_close_code, WS_CLOSE_ABNORMAL);
  assert_true(st.backoff_ms <= ALPACA_BACKOFF_MIN_MS); /* reset by each confirmed session */
  char *log = env_stop(&e);
  assert_non_null(strstr(log, "\"event\":\"alpaca_disconnected\""));
}

static bool got_8(env *e) { return stats(e).messages_total >= 8; }

static void test_fragmented_frames(void **state) {
  env e;
  const char *args[] = {"--mode", "fragment", NULL};
  env_start(&e, "server", args, false);
  assert_true(wait_for(&e, got_8, 10000));
  alpaca_stats st = stats(&e);
  assert_int_equal(st.messages_total, 8);
  assert_int_equal(st.messages[SMSG_BAR], 2);
  assert_int_equal(st.bad_frames, 0);
  assert_int_equal(e.a->s[0].ws.pongs_out, 1);
  env_stop(&e);
}

static bool got_trade(env *e) { return stats(e).messages[SMSG_TRADE] >= 1; }

static void test_ping_answered(void **state) {
  env e;
  const char *args[] = {"--mode", "ping", NULL};
  env_start(&e, "server", args, false);
  /* The fake sends its trade only after our pong came back. */
  assert_true(wait_for(&e, got_trade, 10000));
  assert_string_equal(e.symbols, "PONG ");
  env_stop(&e);
}

static bool recovered(env *e) {
  alpaca_stats st = stats(e);
  return st.protocol_errors >= 1 && st.sessions >= 2 && st.messages_total >= 8;
}

static void bad_frame_then_recover(const char *mode, int code) {
  env e;
  const char *args[] = {"--mode", mode, "--bad-once", "--batches", "1", NULL};
  env_start(&e, "server", args, false);
  assert_true(wait_for(&e, recovered, 10000));
  alpaca_stats st = stats(&e);
  assert_int_equal(st.protocol_errors, 1);
  assert_int_equal(st.reconnects, 1);
  assert_int_equal(st.state, ALPACA_STREAMING);
  char *log = env_stop(&e);
  char want[64];
  snprintf(want, sizeof(want), "\"code\":%d", code);
  const char *d = strstr(log, "\"event\":\"alpaca_disconnected\"");
  assert_non_null(d);
  assert_non_null(strstr(d, want));
}

static void test_oversize_frame(void **state) { bad_frame_then_recover("oversize", WS_CLOSE_TOO_BIG); }
static void test_invalid_frame(void **state) {
  bad_frame_then_recover("invalid", WS_CLOSE_PROTOCOL_ERROR);
}

static bool failed_once(env *e) {
  alpaca_stats st = stats(e);
  return st.state == ALPACA_BACKOFF && st.connects >= 1;
}

static void test_wrong_certificate_refused(void **state) {
  env e;
  env_start(&e, "wrong", NULL, false);
  assert_true(wait_for(&e, failed_once, 10000));
  alpaca_stats st = stats(&e);
  assert_int_equal(st.sessions, 0);
  assert_int_equal(st.last_close_code, WS_CLOSE_ABNORMAL);
  char *log = env_stop(&e);
  assert_non_null(strstr(log, "mismatch"));
}

static bool got_news(env *e) {
  alpaca_stats st;
  alpaca_get_stats(e->a, ALPACA_STREAM_NEWS, &st);
  return st.messages[SMSG_NEWS] >= 2 && stats(e).messages_total >= 8;
}

static void test_news_stream(void **state) {
  env e;
  const char *args[] = {"--batches", "1", NULL};
  env_start(&e, "server", args, true);
  assert_true(wait_for(&e, got_news, 10000));
  alpaca_stats st;
  alpaca_get_stats(e.a, ALPACA_STREAM_NEWS, &st);
  assert_true(st.enabled);
  assert_int_equal(st.state, ALPACA_STREAMING);
  assert_int_equal(st.messages_total, st.messages[SMSG_NEWS]); /* only news there */
  assert_int_equal(stats(&e).messages[SMSG_NEWS], 0);
  assert_string_equal(e.a->s[ALPACA_STREAM_NEWS].subscribe,
                      "{\"action\":\"subscribe\",\"news\":[\"AAPL\",\"MSFT\"]}");
  env_stop(&e);
}

/* ---- configuration --------------------------------------------------------- */

static const char *config_error(const char *const *flags, const char *key, const char *secret) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  td_config cfg;
  assert_int_equal(load_cfg(&cfg, flags, key, secret), 0);
  alpaca *a = (alpaca *)1;
  const char *err = NULL;
  int r = alpaca_new(&loop, alpaca_opts_of(&cfg), on_msg, NULL, &a, &err);
  cfg_free(&cfg);
  assert_int_equal(uv_loop_close(&loop), 0);
  if (r == 0) fail_msg("accepted");
  assert_null(a);
  assert_non_null(err);
  return err;
}

static void test_config_errors(void **state) {
  const char *base[] = {"--feed", "alpaca", NULL};
  const char *err = config_error(base, NULL, NULL);
  assert_non_null(strstr(err, "APCA_API_KEY_ID"));
  assert_non_null(strstr(err, "APCA_API_SECRET_KEY"));
  assert_non_null(strstr(config_error(base, "k", NULL), "APCA_API_SECRET_KEY"));
  const char *feed[] = {"--alpaca-feed", "nasdaq", NULL};
  assert_non_null(strstr(config_error(feed, "k", "s"), "--alpaca-feed"));
  const char *url[] = {"--alpaca-url", "https://example.com/v2/iex", NULL};
  assert_non_null(strstr(config_error(url, "k", "s"), "--alpaca-url"));
  const char *chan[] = {"--alpaca-channels", "quotes,orders", NULL};
  assert_non_null(strstr(config_error(chan, "k", "s"), "--alpaca-channels"));
  const char *news_chan[] = {"--alpaca-channels", "news", NULL};
  assert_non_null(strstr(config_error(news_chan, "k", "s"), "--alpaca-channels"));
  const char *sym[] = {"--symbols", "AAPL,bad sym", NULL};
  assert_non_null(strstr(config_error(sym, "k", "s"), "--symbols"));
  const char *ca[] = {"--ca-file", "/nonexistent.pem", NULL};
  assert_non_null(strstr(config_error(ca, "k", "s"), "--ca-file"));
}

static void test_config_defaults(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  td_config cfg;
  const char *flags[] = {"--alpaca-feed", "sip", "--symbols", "*", "--alpaca-channels",
                         "quotes,trades", NULL};
  assert_int_equal(load_cfg(&cfg, flags, "k\"ey", "se\\cret"), 0);
  alpaca *a;
  const char *err;
  assert_int_equal(alpaca_new(&loop, alpaca_opts_of(&cfg), on_msg, NULL, &a, &err), 0);
  assert_string_equal(a->s[0].url, "wss://stream.data.alpaca.markets/v2/sip");
  assert_string_equal(a->s[0].subscribe,
                      "{\"action\":\"subscribe\",\"quotes\":[\"*\"],\"trades\":[\"*\"]}");
  assert_string_equal(a->auth, "{\"action\":\"auth\",\"key\":\"k\\\"ey\",\"secret\":\"se\\\\cret\"}");
  assert_false(a->s[ALPACA_STREAM_NEWS].st.enabled);
  /* Never started: stopping closes the timers and frees (ASan checks it). */
  alpaca_stop(a, NULL, NULL);
  run_to_end(&loop);
  cfg_free(&cfg);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A channel named twice is subscribed once, in the place first named (as
 * jansson's object did); credentials that are not UTF-8 are refused. */
static void test_config_requests(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  td_config cfg;
  const char *flags[] = {"--symbols", "AAPL, MSFT", "--alpaca-channels", "trades,quotes,trades", NULL};
  assert_int_equal(load_cfg(&cfg, flags, "k\x01", "s"), 0);
  alpaca *a;
  const char *err;
  assert_int_equal(alpaca_new(&loop, alpaca_opts_of(&cfg), on_msg, NULL, &a, &err), 0);
  assert_string_equal(a->s[0].subscribe,
                      "{\"action\":\"subscribe\",\"trades\":[\"AAPL\",\"MSFT\"],\"quotes\":[\"AAPL\",\"MSFT\"]}");
  assert_string_equal(a->auth, "{\"action\":\"auth\",\"key\":\"k\\u0001\",\"secret\":\"s\"}");
  alpaca_stop(a, NULL, NULL);
  run_to_end(&loop);
  cfg_free(&cfg);
  assert_int_equal(uv_loop_close(&loop), 0);
  const char *none[] = {NULL};
  assert_non_null(strstr(config_error(none, "k\xff", "s"), "valid UTF-8"));
}

static void test_backoff_growth(void **state) {
  alpaca a;
  memset(&a, 0, sizeof(a));
  a.rng = 12345;
  astream *s = &a.s[0];
  s->a = &a;
  for (int i = 0; i < 200; i++) {
    s->attempt = i % 12;
    s->backoff = BACKOFF_NORMAL;
    uint64_t d = backoff_delay(s);
    uint64_t full = ALPACA_BACKOFF_MIN_MS;
    for (int k = 0; k < s->attempt && full < ALPACA_BACKOFF_MAX_MS; k++) full *= 2;
    if (full > ALPACA_BACKOFF_MAX_MS) full = ALPACA_BACKOFF_MAX_MS;
    assert_true(d >= full / 2 && d <= full);
    s->backoff = BACKOFF_LONG;
    d = backoff_delay(s);
    assert_true(d >= ALPACA_BACKOFF_LONG_MS / 2 && d <= ALPACA_BACKOFF_LONG_MAX_MS);
    s->backoff = BACKOFF_LIMIT;
    d = backoff_delay(s);
    assert_true(d >= ALPACA_BACKOFF_LIMIT_MS / 2 && d <= ALPACA_BACKOFF_LIMIT_MAX_MS);
    s->backoff = BACKOFF_THROTTLED;
    d = backoff_delay(s);
    assert_true(d >= ALPACA_BACKOFF_THROTTLED_MS / 2 && d <= ALPACA_BACKOFF_THROTTLED_MAX_MS);
  }
  assert_int_equal(alpaca_error_index(407), 7);
  assert_int_equal(alpaca_error_index(418), ALPACA_ERR_OTHER);
  assert_string_equal(alpaca_error_name(406), "connection limit exceeded");
  assert_string_equal(alpaca_state_name(ALPACA_STREAMING), "streaming");
}

/* ---- Alpaca's connection rule: 406 and 429 ---------------------------------- */

/* A second client of the same key, on the env's loop and fake server. */
typedef struct {
  env sink;   /* on_msg's counters only */
  alpaca *a;
  bool stopped;
} second;

static second sec;

static void on_second_stopped(void *ud) { ((second *)ud)->stopped = true; }

static alpaca_stats second_stats(void) {
  alpaca_stats st;
  alpaca_get_stats(sec.a, ALPACA_STREAM_DATA, &st);
  return st;
}

static bool streaming(env *e) { return stats(e).state == ALPACA_STREAMING; }
static bool second_retried(env *e) {
  alpaca_stats st = second_stats();
  return st.auth_retries >= 2 && st.limit_refusals >= 3;
}
static bool second_streaming(env *e) {
  alpaca_stats st = second_stats();
  return st.state == ALPACA_STREAMING && st.messages_total > 0;
}
static bool first_stopped(env *e) { return e->stopped; }

static void second_start(env *e) {
  memset(&sec, 0, sizeof(sec));
  const char *err = NULL;
  assert_int_equal(alpaca_new(&e->loop, alpaca_opts_of(&e->cfg), on_msg, &sec.sink, &sec.a, &err), 0);
  assert_int_equal(alpaca_start(sec.a), 0);
}

/* The slot is taken: the second client's auth is refused with 406 and
 * sent again on the same socket at 0.5 s x n; once the first session
 * closes cleanly, the second streams within the retry cap of the slot
 * freeing, without a reconnect and without the long backoff. */
static void test_406_retries_auth_on_the_same_socket(void **state) {
  env e;
  const char *args[] = {"--one-session", "--batches", "0", "--interval-ms", "50", NULL};
  env_start(&e, "server", args, false);
  assert_true(wait_for(&e, streaming, 10000));
  second_start(&e);
  assert_true(wait_for(&e, second_retried, 10000));
  alpaca_stats st = second_stats();
  assert_int_equal(st.state, ALPACA_AUTHENTICATING);
  assert_int_equal(st.connects, 1);
  assert_int_equal(st.errors[alpaca_error_index(406)], st.limit_refusals);
  assert_int_equal(st.sessions, 0);
  /* the first session closes cleanly: the slot frees 0.4 s later */
  alpaca_stop(e.a, on_stopped, &e);
  assert_true(wait_for(&e, first_stopped, 5000));
  uint64_t t0 = uv_hrtime();
  assert_true(wait_for(&e, second_streaming, 10000));
  uint64_t waited_ms = (uv_hrtime() - t0) / 1000000;
  st = second_stats();
  assert_int_equal(st.connects, 1); /* the same socket all along */
  assert_int_equal(st.sessions, 1);
  /* a retry at most every ALPACA_AUTH_RETRY_MAX_MS: data within a few seconds */
  assert_true(waited_ms < 400 + ALPACA_AUTH_RETRY_MAX_MS + 2000);
  alpaca_stop(sec.a, on_second_stopped, &sec);
  assert_true(run_until(&e.loop, &sec.stopped, 10000));
  char *log = env_finish(&e); /* the first client stopped already */
  assert_non_null(strstr(log, "\"code\":406"));
}

static bool second_reconnecting(env *e) {
  alpaca_stats st = second_stats();
  return st.connects >= 2 && st.limit_refusals >= 2;
}

/* A server that closes the refused socket (Alpaca does after ~10 s): the
 * reconnect waits the short limit backoff, not the long one. */
static void test_406_socket_closed_reconnects_soon(void **state) {
  env e;
  const char *args[] = {"--one-session", "--refused-close-ms", "700", "--batches", "0", "--interval-ms", "50", NULL};
  env_start(&e, "server", args, false);
  assert_true(wait_for(&e, streaming, 10000));
  second_start(&e);
  assert_true(wait_for(&e, second_reconnecting, 15000));
  alpaca_stats st = second_stats();
  assert_true(st.backoff_ms >= ALPACA_BACKOFF_LIMIT_MS / 2);
  assert_true(st.backoff_ms <= ALPACA_BACKOFF_LIMIT_MAX_MS);
  alpaca_stop(sec.a, on_second_stopped, &sec);
  assert_true(run_until(&e.loop, &sec.stopped, 10000));
  char *log = env_stop(&e);
  assert_non_null(strstr(log, "\"name\":\"connection limit exceeded\""));
}

static bool throttled_once(env *e) {
  alpaca_stats st = stats(e);
  return st.throttled >= 1 && st.state == ALPACA_BACKOFF;
}

/* HTTP 429 on the upgrade: counted, logged, and a slower backoff. */
static void test_429_backs_off_slower(void **state) {
  env e;
  const char *args[] = {"--throttle-first", "1", NULL};
  env_start(&e, "server", args, false);
  assert_true(wait_for(&e, throttled_once, 10000));
  alpaca_stats st = stats(&e);
  assert_int_equal(st.throttled, 1);
  assert_true(st.backoff_ms >= ALPACA_BACKOFF_THROTTLED_MS / 2);
  assert_true(st.backoff_ms <= ALPACA_BACKOFF_THROTTLED_MS);
  char *log = env_stop(&e);
  assert_non_null(strstr(log, "\"event\":\"alpaca_throttled\""));
}

int main(void) {
  fake_process_setup();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_happy_path),
      cmocka_unit_test(test_bad_credentials_back_off),
      cmocka_unit_test(test_drop_reconnects_and_resubscribes),
      cmocka_unit_test(test_fragmented_frames),
      cmocka_unit_test(test_ping_answered),
      cmocka_unit_test(test_oversize_frame),
      cmocka_unit_test(test_invalid_frame),
      cmocka_unit_test(test_wrong_certificate_refused),
      cmocka_unit_test(test_news_stream),
      cmocka_unit_test(test_config_errors),
      cmocka_unit_test(test_config_defaults), cmocka_unit_test(test_config_requests),
      cmocka_unit_test(test_backoff_growth),
      cmocka_unit_test(test_406_retries_auth_on_the_same_socket),
      cmocka_unit_test(test_406_socket_closed_reconnects_soon),
      cmocka_unit_test(test_429_backs_off_slower),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
