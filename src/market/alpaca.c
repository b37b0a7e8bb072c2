/* Alpaca's stream protocol over ws_client, one state machine per stream:
 *
 *   DISCONNECTED -> CONNECTING --"connected"--> AUTHENTICATING
 *     --"authenticated"--> SUBSCRIBING --subscription--> STREAMING
 *   any disconnect -> BACKOFF --timer--> CONNECTING ...   alpaca_stop -> CLOSING
 *
 * One timer per stream serves as the setup deadline (connect to
 * subscription) and as the reconnect delay. */
#include "market/alpaca.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/https_client.h"
#include "base/jsonw.h"
#include "base/log.h"
#include "net/tls.h"
#include "upstream/ws_client.h"
#include "base/rng.h"
#include "base/utf8.h"

/* Reconnect paces, by the last failure's kind (see alpaca.h). */
typedef enum {
  BACKOFF_NORMAL,    /* network errors, timeouts, 401/404/500 */
  BACKOFF_LONG,      /* 402, 409: retrying cannot help soon */
  BACKOFF_LIMIT,     /* 406: the slot frees when the other session goes */
  BACKOFF_THROTTLED  /* HTTP 429 on the upgrade */
} alpaca_backoff;

static const struct { uint64_t lo, hi; } backoff_pace[] = {
    [BACKOFF_NORMAL] = {ALPACA_BACKOFF_MIN_MS, ALPACA_BACKOFF_MAX_MS},
    [BACKOFF_LONG] = {ALPACA_BACKOFF_LONG_MS, ALPACA_BACKOFF_LONG_MAX_MS},
    [BACKOFF_LIMIT] = {ALPACA_BACKOFF_LIMIT_MS, ALPACA_BACKOFF_LIMIT_MAX_MS},
    [BACKOFF_THROTTLED] = {ALPACA_BACKOFF_THROTTLED_MS, ALPACA_BACKOFF_THROTTLED_MAX_MS},
};

typedef struct astream {
  struct alpaca *a;
  alpaca_stream_id id;
  const char *name;   /* "stocks" or "news", for logs */
  char *url;
  char *subscribe;    /* the subscribe message */
  wsc ws;
  uv_timer_t timer;
  alpaca_state state;
  int attempt;        /* failed attempts since the last confirmed subscription */
  alpaca_backoff backoff; /* the pace the last failure asks for */
  int auth_tries;     /* auths refused with 406 on this socket */
  bool auth_retry_due; /* the timer resends the auth instead of timing out */
  int64_t frame_ms;   /* wall clock of the frame being parsed */
  uint64_t rate_t0;   /* msgs/s window: start (uv_now) and count then */
  uint64_t rate_n0;
  double rate;
  alpaca_stats st;
} astream;

struct alpaca {
  uv_loop_t *loop;
  tls_ctx *ctx;
  alpaca_msg_cb on_msg;
  void *ud;
  char *auth;         /* holds the secret: wiped before free, never logged */
  astream s[ALPACA_STREAM_COUNT];
  bool started;
  bool stopping;
  int pending;        /* close callbacks alpaca_stop waits for */
  void (*done)(void *);
  void *done_ud;
  uint64_t rng;
};

static const int error_codes[ALPACA_ERR_KNOWN] = ALPACA_ERR_CODES;

static void stream_connect(astream *s);
static const wsc_callbacks alpaca_ws_cb;

/* ---- names ---------------------------------------------------------------- */

const char *alpaca_state_name(alpaca_state st) {
  static const char *names[] = {"disconnected", "connecting", "authenticating", "subscribing",
                                "streaming", "backoff", "closing"};
  return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "unknown";
}

int alpaca_error_code(int i) { return i >= 0 && i < ALPACA_ERR_KNOWN ? error_codes[i] : 0; }

int alpaca_error_index(int64_t code) {
  for (int i = 0; i < ALPACA_ERR_KNOWN; i++)
    if (error_codes[i] == code) return i;
  return ALPACA_ERR_OTHER;
}

const char *alpaca_error_name(int64_t code) {
  switch (code) {
  case 400: return "invalid syntax";
  case 401: return "not authenticated";
  case 402: return "auth failed";
  case 403: return "already authenticated";
  case 404: return "auth timeout";
  case 405: return "symbol limit exceeded";
  case 406: return "connection limit exceeded";
  case 407: return "slow client";
  case 409: return "insufficient subscription";
  case 500: return "internal error";
  default: return "unknown error";
  }
}

/* ---- backoff -------------------------------------------------------------- */

static uint64_t backoff_delay(astream *s) {
  return backoff_ms(backoff_pace[s->backoff].lo, backoff_pace[s->backoff].hi, (unsigned)s->attempt, &s->a->rng);
}

static void on_timer(uv_timer_t *t);

static void schedule_reconnect(astream *s) {
  uint64_t delay = backoff_delay(s);
  s->attempt++;
  s->st.backoff_ms = delay;
  s->state = ALPACA_BACKOFF;
  uv_timer_start(&s->timer, on_timer, delay, 0);
  td_logline *l = log_begin(TD_LOG_INFO, "alpaca_backoff");
  if (l) {
    log_str(l, "stream", s->name);
    log_int(l, "delay_ms", (int64_t)delay);
    log_int(l, "attempt", s->attempt);
    log_end(l);
  }
}

/* Ends the connection; its on_close schedules the reconnect at the pace
 * `backoff` asks for (a slower pace already chosen stays). */
static void drop_connection(astream *s, alpaca_backoff backoff, const char *why) {
  if (backoff != BACKOFF_NORMAL) s->backoff = backoff;
  wsc_close(&s->ws, WS_CLOSE_NORMAL, why);
}

/* ---- control messages ----------------------------------------------------- */

static void send_text(astream *s, const char *text, const char *what) {
  int r = wsc_send_text(&s->ws, text, strlen(text));
  if (r < 0) {
    td_logline *l = log_begin(TD_LOG_WARN, "alpaca_send_failed");
    if (l) {
      log_str(l, "stream", s->name);
      log_str(l, "message", what); /* never the text: the auth message holds the secret */
      log_str(l, "error", uv_strerror(r));
      log_end(l);
    }
  }
}

static void on_success(astream *s, const char *msg) {
  if (!strcmp(msg, "connected") && s->state == ALPACA_CONNECTING) {
    s->state = ALPACA_AUTHENTICATING;
    send_text(s, s->a->auth, "auth");
  } else if (!strcmp(msg, "authenticated") && s->state == ALPACA_AUTHENTICATING) {
    s->state = ALPACA_SUBSCRIBING;
    td_logline *l = log_begin(TD_LOG_INFO, "alpaca_authenticated");
    if (l) {
      log_str(l, "stream", s->name);
      log_end(l);
    }
    send_text(s, s->subscribe, "subscribe");
  } else {
    td_logline *l = log_begin(TD_LOG_DEBUG, "alpaca_success");
    if (l) {
      log_str(l, "stream", s->name);
      log_str(l, "msg", msg);
      log_str(l, "state", alpaca_state_name(s->state));
      log_end(l);
    }
  }
}

static void on_subscription(astream *s, const smsg_control *c) {
  bool first = s->state != ALPACA_STREAMING;
  s->state = ALPACA_STREAMING;
  s->attempt = 0;
  s->backoff = BACKOFF_NORMAL;
  if (first) s->st.sessions++;
  uv_timer_stop(&s->timer); /* the setup deadline */
  td_logline *l = log_begin(TD_LOG_INFO, "alpaca_subscribed");
  if (l) {
    log_str(l, "stream", s->name);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)c->obj, key, v) {
      if (json_is_array(v)) log_int(l, key, (int64_t)json_array_size(v));
    }
    log_end(l);
  }
}

/* 406: another session holds the slot. Send the auth again on this socket
 * after a short, growing pause (see ALPACA_AUTH_RETRY_STEP_MS). */
static void retry_auth_later(astream *s) {
  s->backoff = BACKOFF_LIMIT; /* if the socket goes, reconnect at the short pace */
  if (s->state != ALPACA_AUTHENTICATING || ++s->auth_tries > ALPACA_AUTH_RETRY_MAX_TRIES) {
    drop_connection(s, BACKOFF_LIMIT, "connection limit exceeded");
    return;
  }
  uint64_t delay = (uint64_t)s->auth_tries * ALPACA_AUTH_RETRY_STEP_MS;
  if (delay > ALPACA_AUTH_RETRY_MAX_MS) delay = ALPACA_AUTH_RETRY_MAX_MS;
  s->auth_retry_due = true;
  uv_timer_start(&s->timer, on_timer, delay, 0); /* replaces the setup deadline until then */
}

static void on_error(astream *s, int64_t code, const char *msg) {
  s->st.errors[alpaca_error_index(code)]++;
  if (code == 407) s->st.slow_client++;
  td_logline *l = log_begin(code == 403 || code == 407 ? TD_LOG_WARN : TD_LOG_ERROR, "alpaca_error");
  if (l) {
    log_str(l, "stream", s->name);
    log_int(l, "code", code);
    log_str(l, "name", alpaca_error_name(code));
    log_str(l, "msg", msg);
    log_str(l, "state", alpaca_state_name(s->state));
    log_end(l);
  }
  switch (code) {
  case 403: /* already authenticated: harmless */
  case 405: /* symbol limit: the rest of the subscription stands; retrying cannot help */
  case 407: /* slow client: counted; Alpaca drops the connection if it persists */
  case 400: /* invalid syntax: our message was wrong; the connection is still usable */
    break;
  case 406: /* connection limit exceeded */
    s->st.limit_refusals++;
    retry_auth_later(s);
    break;
  case 402: /* auth failed */
  case 409: /* insufficient subscription */
    drop_connection(s, BACKOFF_LONG, alpaca_error_name(code));
    break;
  default: /* 401, 404, 500, unknown: start over */
    drop_connection(s, BACKOFF_NORMAL, alpaca_error_name(code));
    break;
  }
}

/* ---- frames --------------------------------------------------------------- */

static void on_smsg(void *ud, const smsg_msg *m) {
  astream *s = ud;
  s->st.messages[m->kind]++;
  s->st.messages_total++;
  s->st.last_message_ms = s->frame_ms;
  s->a->on_msg(s->a->ud, m);
}

static void on_control(void *ud, const smsg_control *c) {
  astream *s = ud;
  if (s->state == ALPACA_CLOSING) return;
  switch (c->kind) {
  case SMSG_CTL_SUCCESS: on_success(s, c->msg); break;
  case SMSG_CTL_SUBSCRIPTION: on_subscription(s, c); break;
  case SMSG_CTL_ERROR: on_error(s, c->code, c->msg); break;
  }
}

static void update_rate(astream *s) {
  uint64_t now = uv_now(s->a->loop), dt = now - s->rate_t0;
  if (dt < 1000) return;
  s->rate = (double)(s->st.messages_total - s->rate_n0) * 1000.0 / (double)dt;
  s->rate_t0 = now;
  s->rate_n0 = s->st.messages_total;
}

static void ws_on_message(wsc *w, const char *text, size_t len) {
  astream *s = w->data;
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  s->frame_ms = tv.tv_sec * 1000 + tv.tv_usec / 1000;
  int r = smsg_parse_stream(text, len, on_smsg, on_control, s, &s->st.parse);
  if (r == -EINVAL) {
    s->st.bad_frames++;
    /* Logged at 1, 2, 4, 8, ...: a broken upstream cannot flood the log. */
    if ((s->st.bad_frames & (s->st.bad_frames - 1)) == 0) {
      td_logline *l = log_begin(TD_LOG_WARN, "alpaca_bad_frame");
      if (l) {
        log_str(l, "stream", s->name);
        log_int(l, "count", (int64_t)s->st.bad_frames);
        log_strn(l, "start", text, len < 64 ? len : 64);
        log_end(l);
      }
    }
  }
  update_rate(s);
}

static void ws_on_open(wsc *w) {
  astream *s = w->data;
  td_logline *l = log_begin(TD_LOG_INFO, "alpaca_connected");
  if (l) {
    log_str(l, "stream", s->name);
    log_str(l, "url", s->url);
    log_end(l);
  }
}

static void maybe_stopped(alpaca *a);

static void ws_on_close(wsc *w, int code, const char *reason) {
  astream *s = w->data;
  s->st.last_close_code = code;
  if (code == WS_CLOSE_PROTOCOL_ERROR || code == WS_CLOSE_INVALID_DATA ||
      code == WS_CLOSE_TOO_BIG || code == WS_CLOSE_UNSUPPORTED)
    s->st.protocol_errors++;
  td_logline *l = log_begin(s->a->stopping ? TD_LOG_INFO : TD_LOG_WARN, "alpaca_disconnected");
  if (l) {
    log_str(l, "stream", s->name);
    log_int(l, "code", code);
    log_str(l, "reason", reason);
    log_str(l, "state", alpaca_state_name(s->state));
    log_end(l);
  }
  if (s->a->stopping) {
    s->state = ALPACA_CLOSING;
    s->a->pending--;
    maybe_stopped(s->a);
    return;
  }
  s->auth_retry_due = false;
  if (w->head.status == 429) {
    s->st.throttled++;
    s->backoff = BACKOFF_THROTTLED;
    l = log_begin(TD_LOG_WARN, "alpaca_throttled");
    if (l) {
      log_str(l, "stream", s->name);
      log_int(l, "status", 429);
      log_int(l, "count", (int64_t)s->st.throttled);
      log_end(l);
    }
  }
  schedule_reconnect(s);
}

static const wsc_callbacks alpaca_ws_cb = {ws_on_open, ws_on_message, ws_on_close};

/* ---- connecting ----------------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  astream *s = t->data;
  if (s->state == ALPACA_BACKOFF) {
    stream_connect(s);
    return;
  }
  if (s->auth_retry_due && s->state == ALPACA_AUTHENTICATING) {
    s->auth_retry_due = false;
    s->st.auth_retries++;
    send_text(s, s->a->auth, "auth");
    uv_timer_start(&s->timer, on_timer, ALPACA_SETUP_TIMEOUT_MS, 0);
    return;
  }
  td_logline *l = log_begin(TD_LOG_WARN, "alpaca_setup_timeout");
  if (l) {
    log_str(l, "stream", s->name);
    log_str(l, "state", alpaca_state_name(s->state));
    log_end(l);
  }
  drop_connection(s, BACKOFF_NORMAL, "setup timeout");
}

static void stream_connect(astream *s) {
  s->st.connects++;
  if (s->st.connects > 1) s->st.reconnects++;
  s->state = ALPACA_CONNECTING;
  s->auth_tries = 0;
  s->auth_retry_due = false;
  td_logline *l = log_begin(TD_LOG_INFO, "alpaca_connecting");
  if (l) {
    log_str(l, "stream", s->name);
    log_str(l, "url", s->url);
    log_int(l, "attempt", s->attempt);
    log_end(l);
  }
  int r = wsc_connect(&s->ws, s->url, ALPACA_MAX_MESSAGE, ALPACA_CONNECT_TIMEOUT_MS);
  if (r < 0) {
    log_msg(TD_LOG_ERROR, "alpaca_connect_failed", uv_strerror(r));
    schedule_reconnect(s);
    return;
  }
  uv_timer_start(&s->timer, on_timer, ALPACA_SETUP_TIMEOUT_MS, 0);
}

int alpaca_start(alpaca *a) {
  if (a->started) return UV_EALREADY;
  a->started = true;
  for (int i = 0; i < ALPACA_STREAM_COUNT; i++)
    if (a->s[i].st.enabled) stream_connect(&a->s[i]);
  return 0;
}

/* ---- stopping ------------------------------------------------------------- */

static void free_alpaca(alpaca *a) {
  for (int i = 0; i < ALPACA_STREAM_COUNT; i++) {
    free(a->s[i].url);
    free(a->s[i].subscribe);
  }
  if (a->auth) {
    explicit_bzero(a->auth, strlen(a->auth));
    free(a->auth);
  }
  tls_ctx_free(a->ctx);
  free(a);
}

static void maybe_stopped(alpaca *a) {
  if (a->pending > 0) return;
  void (*done)(void *) = a->done;
  void *ud = a->done_ud;
  free_alpaca(a);
  if (done) done(ud);
}

static void on_timer_closed(uv_handle_t *h) {
  astream *s = h->data;
  s->a->pending--;
  maybe_stopped(s->a);
}

void alpaca_stop(alpaca *a, void (*done)(void *ud), void *ud) {
  if (a->stopping) return;
  a->stopping = true;
  a->done = done;
  a->done_ud = ud;
  a->pending = 1; /* held until every close below was started */
  for (int i = 0; i < ALPACA_STREAM_COUNT; i++) {
    astream *s = &a->s[i];
    if (!s->st.enabled) continue;
    s->state = ALPACA_CLOSING;
    uv_timer_stop(&s->timer);
    a->pending++;
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    if (s->ws.state != WSC_IDLE) {
      a->pending++;
      wsc_close(&s->ws, WS_CLOSE_GOING_AWAY, "shutdown");
    }
  }
  a->pending--;
  /* Every stream had at least its timer to close: the rest runs from the loop. */
  if (a->pending == 0) maybe_stopped(a);
}

void alpaca_get_stats(const alpaca *a, alpaca_stream_id id, alpaca_stats *out) {
  const astream *s = &a->s[id];
  *out = s->st;
  out->state = s->state;
  uint64_t now = uv_now(a->loop), dt = now - s->rate_t0;
  /* Without a message for a while the last rate would stay frozen: decay it. */
  out->msgs_per_sec = dt >= 2000 ? (double)(s->st.messages_total - s->rate_n0) * 1000.0 / (double)dt
                                 : s->rate;
}

/* ---- configuration -------------------------------------------------------- */

static bool feed_known(const char *feed) {
  static const char *feeds[] = {"iex", "sip", "delayed_sip", "test"};
  for (size_t i = 0; i < sizeof(feeds) / sizeof(feeds[0]); i++)
    if (!strcmp(feed, feeds[i])) return true;
  return false;
}

/* Writes the symbols as a JSON array under `key`; false when one is not
 * valid or there is none. */
static bool put_symbols(jsonw *w, const char *key, const char *csv) {
  jw_array(w, key);
  const char *p = csv ? csv : "";
  int count = 0;
  while (*p) {
    size_t n = strcspn(p, ",");
    while (n > 0 && p[0] == ' ') p++, n--;
    while (n > 0 && p[n - 1] == ' ') n--;
    bool star = n == 1 && p[0] == '*';
    if (!star && !smsg_symbol_valid(p, n)) return false;
    jw_strn(w, NULL, p, n);
    count++;
    p += n;
    while (*p == ',' || *p == ' ') p++;
  }
  jw_end(w);
  return count > 0;
}

/* A finished writer's text, handed over (free() it), or NULL when it failed
 * or is longer than a request may be. */
static char *request_text(jsonw *w) {
  if (w->failed || w->len > ALPACA_MAX_REQUEST) {
    jw_free(w);
    return NULL;
  }
  return w->p;
}

/* {"action":"subscribe","<channel>":[symbols],...} for each configured
 * channel, once each in the order first named. */
static char *subscribe_message(const char *channels, const char *symbols, const char **err) {
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  JW_STR(&w, "action", "subscribe");
  const char *p = channels ? channels : "";
  unsigned named = 0;
  while (*p) {
    size_t n = strcspn(p, ",");
    int kind = smsg_kind_from_channel(p, n);
    if (kind < 0 || kind == SMSG_NEWS) {
      jw_free(&w);
      *err = "--alpaca-channels: unknown channel (quotes, trades, bars, updatedBars, dailyBars, "
             "statuses, lulds, corrections, cancelErrors)";
      return NULL;
    }
    if (!(named & 1u << kind)) put_symbols(&w, smsg_kind_channel((smsg_kind)kind), symbols);
    named |= 1u << kind;
    p += n;
    while (*p == ',') p++;
  }
  if (!named) {
    jw_free(&w);
    *err = "--alpaca-channels: no channel";
    return NULL;
  }
  jw_end(&w);
  char *text = request_text(&w);
  if (!text) *err = "--symbols: the subscription is too long";
  return text;
}

static int check_ws_url(const char *url) {
  hcli_url u;
  return hcli_url_parse(url, &u) == 0 && u.websocket ? 0 : -EINVAL;
}

static int setup_streams(alpaca *a, const alpaca_opts *cfg, const char **err) {
  astream *data = &a->s[ALPACA_STREAM_DATA], *news = &a->s[ALPACA_STREAM_NEWS];
  if (cfg->url && *cfg->url) {
    data->url = strdup(cfg->url);
  } else {
    const char *feed = cfg->feed ? cfg->feed : "iex";
    if (!feed_known(feed)) {
      *err = "--alpaca-feed must be iex, sip, delayed_sip or test";
      return -EINVAL;
    }
    size_t n = strlen(ALPACA_STREAM_BASE) + strlen(feed) + 1;
    data->url = malloc(n);
    if (data->url) snprintf(data->url, n, "%s%s", ALPACA_STREAM_BASE, feed);
  }
  if (!data->url) return -ENOMEM;
  if (check_ws_url(data->url) < 0) {
    *err = "--alpaca-url must be a ws:// or wss:// URL";
    return -EINVAL;
  }
  jsonw w;
  jw_init(&w, 0);
  bool valid = put_symbols(&w, NULL, cfg->symbols);
  jw_free(&w);
  if (!valid) {
    *err = "--symbols: a symbol is not valid ([A-Z0-9./-]{1,16}, or * for all)";
    return -EINVAL;
  }
  data->subscribe = subscribe_message(cfg->channels, cfg->symbols, err);
  data->st.enabled = true;
  if (data->subscribe && cfg->news) {
    const char *nurl = cfg->news_url;
    if (!nurl || check_ws_url(nurl) < 0) {
      *err = "--alpaca-news-url must be a ws:// or wss:// URL";
      return -EINVAL;
    }
    news->url = strdup(nurl);
    jw_init(&w, 0);
    jw_object(&w, NULL);
    JW_STR(&w, "action", "subscribe");
    put_symbols(&w, "news", cfg->symbols);
    jw_end(&w);
    news->subscribe = request_text(&w);
    if (!news->url || !news->subscribe) return -ENOMEM;
    news->st.enabled = true;
  }
  return data->subscribe ? 0 : -EINVAL;
}

int alpaca_new(uv_loop_t *loop, const alpaca_opts *cfg, alpaca_msg_cb on_msg, void *ud,
               alpaca **out, const char **err) {
  *out = NULL;
  *err = NULL;
  if (!cfg->key_id || !*cfg->key_id || !cfg->secret_key ||
      !*cfg->secret_key) {
    *err = "--feed alpaca needs the environment variables APCA_API_KEY_ID and APCA_API_SECRET_KEY";
    return -EINVAL;
  }
  alpaca *a = calloc(1, sizeof(*a));
  if (!a) {
    *err = "out of memory";
    return -ENOMEM;
  }
  a->loop = loop;
  a->on_msg = on_msg;
  a->ud = ud;
  a->rng = rng_seed_random();
  if (utf8_valid(cfg->key_id, strlen(cfg->key_id)) && utf8_valid(cfg->secret_key, strlen(cfg->secret_key))) {
    jsonw w;
    jw_init(&w, 0);
    jw_object(&w, NULL);
    JW_STR(&w, "action", "auth");
    JW_STR(&w, "key", cfg->key_id);
    JW_STR(&w, "secret", cfg->secret_key);
    jw_end(&w);
    a->auth = request_text(&w);
  } else {
    *err = "APCA_API_KEY_ID and APCA_API_SECRET_KEY must be valid UTF-8";
  }
  int r = a->auth ? setup_streams(a, cfg, err) : -EINVAL;
  if (r == 0) r = tls_ctx_new(&a->ctx, cfg->ca_file, err);
  if (r < 0) {
    if (!*err) *err = r == -ENOMEM ? "out of memory" : "invalid Alpaca configuration";
    free_alpaca(a);
    return r;
  }
  static const char *names[ALPACA_STREAM_COUNT] = {"stocks", "news"};
  for (int i = 0; i < ALPACA_STREAM_COUNT; i++) {
    astream *s = &a->s[i];
    s->a = a;
    s->id = (alpaca_stream_id)i;
    s->name = names[i];
    s->state = ALPACA_DISCONNECTED;
    s->rate_t0 = uv_now(loop);
    if (!s->st.enabled) continue;
    wsc_init(loop, &s->ws, a->ctx, &alpaca_ws_cb);
    s->ws.data = s;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
  }
  *out = a;
  return 0;
}
