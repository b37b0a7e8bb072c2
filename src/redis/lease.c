/* The fleet's one-holder lease in Redis; see lease.h for the protocol. */
#include "redis/lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/hex.h"
#include "base/log.h"
#include "base/uuid.h"
#include "redis/cluster.h"

enum { TAG_SET = 1, TAG_PROBE = 2, TAG_RELEASE = 3 };

/* Renew if still ours; either way say who holds it and for how long. */
static const char probe_script[] =
    "local v = redis.call('GET', KEYS[1]) "
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
    "return {v or '', redis.call('PTTL', KEYS[1])}";
/* Delete only our own lease: after a takeover the key is someone else's. */
static const char release_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

struct td_lease {
  uv_loop_t *loop;
  td_rconn conn;
  uv_timer_t round_timer;    /* the next round, or the release's timeout */
  uv_timer_t deadline_timer; /* fires when the lease would run out unrenewed */
  lease_state state;
  char id[LEASE_ID_LEN + 1];
  char key[LEASE_KEY_MAX + 1];
  char ttl_str[16];
  uint32_t ttl_ms, renew_ms, margin_ms;
  bool holder;
  uint64_t valid_until_ms;   /* monotonic ms; meaningful while holder */
  uint64_t round_sent_ms;
  bool round_out;
  bool seen_other;           /* another instance held it since we last did */
  lease_stats st;
  lease_role_cb on_role;
  void *ud;
  void (*done)(void *);
  void *done_ud;
  int closes_pending;
  /* Redis Cluster: the connection goes to the primary of the key's slot,
   * and moves (closed, then opened on the new owner) when the map says the
   * slot has another one. */
  td_rcluster *map;
  char *conn_url;            /* the node connected to; NULL: no connection yet */
  char *next_url;            /* the node to connect to once conn is closed */
  rconn_options conn_opt;
  bool started;
};

static void c_ready(td_rconn *c, void *ud);
static void c_lost(td_rconn *c, void *ud, const char *reason, bool was_ready);
static void c_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag);
static void c_closed(td_rconn *c, void *ud);

static const char *const state_names[] = {"idle",    "connecting", "acquiring", "held",
                                          "standby", "releasing",  "closing",   "closed"};

const char *lease_state_name(lease_state s) {
  return (unsigned)s < sizeof(state_names) / sizeof(*state_names) ? state_names[s] : "?";
}

/* The monotonic clock now, not the loop's cached time: see lease.h. */
static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

void lease_make_id(char out[LEASE_ID_LEN + 1]) {
  uint8_t b[LEASE_ID_LEN / 2];
  if (uuid_random_bytes(b, sizeof(b)) != 0) {
    /* getrandom failed: the clock still tells processes apart */
    uint64_t t = uv_hrtime();
    memcpy(b, &t, sizeof(b) < sizeof(t) ? sizeof(b) : sizeof(t));
  }
  for (size_t i = 0; i < sizeof(b); i++) {
    out[2 * i] = HEX_DIGITS[b[i] >> 4];
    out[2 * i + 1] = HEX_DIGITS[b[i] & 15];
  }
  out[LEASE_ID_LEN] = '\0';
}

static uint32_t margin_of(uint32_t ttl_ms) { return ttl_ms * LEASE_MARGIN_PCT / 100; }

const char *lease_check_options(const lease_options *o) {
  if (!o->key || !*o->key || strlen(o->key) > LEASE_KEY_MAX) return "lease key: 1 to 256 bytes";
  if (o->ttl_ms < LEASE_TTL_MIN_MS || o->ttl_ms > LEASE_TTL_MAX_MS) return "lease TTL out of range";
  if (o->renew_ms < LEASE_RENEW_MIN_MS || o->renew_ms >= o->ttl_ms - margin_of(o->ttl_ms))
    return "the lease renew interval must be shorter than 90% of the lease TTL";
  return NULL;
}

static void log_lease(td_log_level level, const char *event, const td_lease *l, const char *other) {
  td_logline *line = log_begin(level, event);
  if (!line) return;
  log_str(line, "instance", l->id);
  log_str(line, "key", l->key);
  if (other) log_str(line, "holder", other);
  log_int(line, "takeovers", (int64_t)l->st.takeovers);
  log_end(line);
}

/* ---- role ------------------------------------------------------------------- */

static void set_holder(td_lease *l, bool holder, const char *event, const char *other) {
  if (l->holder == holder) return;
  l->holder = holder;
  if (holder) {
    l->st.acquired++;
    if (l->seen_other) l->st.takeovers++;
    l->seen_other = false;
    log_lease(TD_LOG_INFO, event, l, NULL);
  } else {
    l->st.lost++;
    uv_timer_stop(&l->deadline_timer);
    log_lease(TD_LOG_WARN, event, l, other);
  }
  if (l->on_role) l->on_role(l, holder, l->ud);
}

static void on_deadline(uv_timer_t *t) {
  td_lease *l = t->data;
  if (!l->holder) return;
  if (now_ms() < l->valid_until_ms) {
    /* the loop's clock lags the monotonic one: look again at the deadline */
    uv_timer_start(&l->deadline_timer, on_deadline, l->valid_until_ms - now_ms() + 1, 0);
    return;
  }
  l->st.expired_unrenewed++;
  set_holder(l, false, "lease_expired", NULL);
}

/* ---- rounds ------------------------------------------------------------------ */

static void on_round_timer(uv_timer_t *t);

static void schedule_round(td_lease *l, uint64_t delay_ms) {
  uv_timer_start(&l->round_timer, on_round_timer, delay_ms, 0);
}

static void send_round(td_lease *l) {
  if (l->round_out || !rconn_ready(&l->conn)) return;
  const char *set[] = {"SET", l->key, l->id, "NX", "PX", l->ttl_str};
  const char *probe[] = {"EVAL", probe_script, "1", l->key, l->id, l->ttl_str};
  l->round_sent_ms = now_ms();
  if (rconn_command_argv(&l->conn, TAG_SET, 6, set, NULL) != 0 ||
      rconn_command_argv(&l->conn, TAG_PROBE, 6, probe, NULL) != 0) {
    /* the connection refused the command: it is going away, on_ready restarts */
    if (l->holder) l->st.renew_failures++;
    return;
  }
  l->round_out = true;
  l->st.rounds++;
  l->state = LEASE_ACQUIRING;
}

static void on_round_timer(uv_timer_t *t) {
  td_lease *l = t->data;
  if (l->state == LEASE_RELEASING) {
    /* no answer to the release in time: close anyway, the TTL frees the key */
    l->state = LEASE_CLOSING;
    rconn_close(&l->conn);
    return;
  }
  send_round(l);
}

/* The probe's answer: {holder, pttl}. */
static void on_probe(td_lease *l, const redisReply *r) {
  l->round_out = false;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
      r->element[1]->type != REDIS_REPLY_INTEGER) {
    if (l->holder) l->st.renew_failures++;
    if (r) {
      log_lease(TD_LOG_WARN, "lease_bad_reply", l, r->type == REDIS_REPLY_ERROR ? r->str : NULL);
      /* MOVED, CLUSTERDOWN: the key's slot has (or is getting) another owner */
      if (l->map && r->type == REDIS_REPLY_ERROR) {
        if (strncmp(r->str, "MOVED ", 6) == 0) rcl_moved(l->map, r->str + 6, r->len - 6);
        else rcl_refresh(l->map);
      }
      schedule_round(l, l->renew_ms);
    }
    /* NULL: the connection went away; on_ready starts the next round */
    return;
  }
  const redisReply *who = r->element[0];
  int64_t pttl = r->element[1]->integer;
  l->st.holder_pttl_ms = pttl;
  bool ours = who->len == LEASE_ID_LEN && memcmp(who->str, l->id, LEASE_ID_LEN) == 0;
  if (ours) {
    uint64_t until = l->round_sent_ms + l->ttl_ms - l->margin_ms;
    memcpy(l->st.holder_id, l->id, sizeof(l->st.holder_id));
    if (now_ms() < until) {
      l->valid_until_ms = until;
      l->state = LEASE_HELD;
      set_holder(l, true, "lease_acquired", NULL);
      uv_timer_start(&l->deadline_timer, on_deadline, until - now_ms() + 1, 0);
    } else {
      /* the answer came back too late to count on it */
      l->st.renew_failures++;
    }
    schedule_round(l, l->renew_ms);
    return;
  }
  snprintf(l->st.holder_id, sizeof(l->st.holder_id), "%.*s",
           who->len <= LEASE_ID_LEN ? (int)who->len : LEASE_ID_LEN, who->str);
  if (who->len > 0) l->seen_other = true;
  l->state = LEASE_STANDBY;
  set_holder(l, false, "lease_lost", l->st.holder_id);
  /* pttl -2: no key (it expired between our SET and the probe); -1: a key
   * without a TTL that someone else set by hand, which only an operator
   * can clear: look again at the renew pace. */
  uint64_t delay = l->renew_ms;
  if (pttl == -2) delay = LEASE_EXPIRY_SLACK_MS;
  else if (pttl >= 0 && (uint64_t)pttl + LEASE_EXPIRY_SLACK_MS < delay) delay = (uint64_t)pttl + LEASE_EXPIRY_SLACK_MS;
  schedule_round(l, delay);
}

/* ---- connection ---------------------------------------------------------------- */

static void c_ready(td_rconn *c, void *ud) {
  td_lease *l = ud;
  if (l->state == LEASE_RELEASING || l->state == LEASE_CLOSING) return;
  send_round(l);
}

static void c_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {
  td_lease *l = ud;
  l->round_out = false;
  if (l->state == LEASE_RELEASING) {
    l->state = LEASE_CLOSING;
    rconn_close(&l->conn);
    return;
  }
  if (l->state == LEASE_CLOSING) return;
  uv_timer_stop(&l->round_timer);
  l->state = LEASE_CONNECTING;
  if (l->map) rcl_refresh(l->map); /* the key's primary may have failed over */
  /* a holder stays one until its deadline: the key cannot have expired yet */
}

static void c_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  td_lease *l = ud;
  if (tag == TAG_RELEASE) {
    if (l->state == LEASE_RELEASING) {
      l->state = LEASE_CLOSING;
      rconn_close(&l->conn);
    }
    return;
  }
  if (l->state == LEASE_RELEASING || l->state == LEASE_CLOSING) return;
  if (tag == TAG_PROBE) on_probe(l, r);
  /* TAG_SET: the probe that follows it tells the whole story */
}

static void on_handle_closed(uv_handle_t *h) {
  td_lease *l = h->data;
  if (--l->closes_pending > 0) return;
  void (*done)(void *) = l->done;
  void *done_ud = l->done_ud;
  free(l->conn_url);
  free(l->next_url);
  free(l);
  if (done) done(done_ud);
}

static void map_closed(void *ud) { on_handle_closed((uv_handle_t *)&((td_lease *)ud)->round_timer); }

/* Connects to l->next_url (the key's primary in the current map). */
static void connect_owner(td_lease *l) {
  static const rconn_callbacks cb = {c_ready, c_lost, c_reply, c_closed};
  const char *err = NULL;
  free(l->conn_url);
  l->conn_url = l->next_url;
  l->next_url = NULL;
  if (rconn_init(&l->conn, l->loop, l->conn_url, &cb, l, &l->conn_opt, &err) != 0) {
    free(l->conn_url);
    l->conn_url = NULL;
    return;
  }
  if (l->started) rconn_start(&l->conn);
}

static void on_map(td_rcluster *map, bool changed, void *ud) {
  td_lease *l = ud;
  const rcl_node *n = rcl_node_at(map, rcl_owner(map, rcl_slot(l->key, strlen(l->key))));
  if (!n || l->state >= LEASE_RELEASING || (l->conn_url && strcmp(n->url, l->conn_url) == 0)) return;
  char *url = strdup(n->url);
  if (!url) return;
  free(l->next_url);
  l->next_url = url;
  if (!l->conn_url) connect_owner(l);
  else if (l->conn.state != RCONN_CLOSING) rconn_close(&l->conn); /* c_closed connects to next_url */
}

static void c_closed(td_rconn *c, void *ud) {
  td_lease *l = ud;
  if (l->next_url && l->state < LEASE_RELEASING) {
    l->round_out = false;
    connect_owner(l);
    return;
  }
  l->state = LEASE_CLOSED;
  l->closes_pending = 2;
  if (l->map) l->closes_pending++, rcl_close(l->map, map_closed, l);
  uv_close((uv_handle_t *)&l->round_timer, on_handle_closed);
  uv_close((uv_handle_t *)&l->deadline_timer, on_handle_closed);
}

/* ---- API ----------------------------------------------------------------------- */

td_lease *lease_new(uv_loop_t *loop, const char *redis_url, const char *id, const lease_options *opt,
                    lease_role_cb on_role, void *ud, const char **err) {
  const char *bad = lease_check_options(opt);
  if (bad || !id || strlen(id) != LEASE_ID_LEN) {
    if (err) *err = bad ? bad : "instance id must be 16 hex digits";
    return NULL;
  }
  td_lease *l = calloc(1, sizeof(*l));
  if (!l) {
    if (err) *err = "out of memory";
    return NULL;
  }
  rconn_options co = opt->conn;
  if (!co.name) co.name = "lease";
  /* a stalled server must be noticed well before the deadline */
  if (!co.command_timeout_ms) co.command_timeout_ms = opt->ttl_ms / 2;
  rconn_callbacks cb = {c_ready, c_lost, c_reply, c_closed};
  l->loop = loop;
  memcpy(l->id, id, LEASE_ID_LEN + 1);
  snprintf(l->key, sizeof(l->key), "%s", opt->key);
  l->conn_opt = co;
  if (rcl_is_url(redis_url) ? !(l->map = rcl_new(loop, redis_url, "lease", on_map, l))
                            : rconn_init(&l->conn, loop, redis_url, &cb, l, &co, err) != 0) {
    if (err && l->map == NULL && rcl_is_url(redis_url)) *err = "bad redis+cluster:// URL";
    free(l);
    return NULL;
  }
  l->ttl_ms = opt->ttl_ms;
  l->renew_ms = opt->renew_ms;
  l->margin_ms = margin_of(opt->ttl_ms);
  snprintf(l->ttl_str, sizeof(l->ttl_str), "%u", opt->ttl_ms);
  l->on_role = on_role;
  l->ud = ud;
  l->st.holder_pttl_ms = -2;
  uv_timer_init(loop, &l->round_timer);
  uv_timer_init(loop, &l->deadline_timer);
  l->round_timer.data = l->deadline_timer.data = l;
  l->state = LEASE_IDLE;
  return l;
}

void lease_start(td_lease *l) {
  if (l->state != LEASE_IDLE) return;
  l->state = LEASE_CONNECTING;
  l->started = true;
  if (!l->map || l->conn_url) rconn_start(&l->conn);
}

bool lease_held(const td_lease *l) { return l->holder && now_ms() < l->valid_until_ms; }

void lease_get_stats(const td_lease *l, lease_stats *out) {
  *out = l->st;
  out->state = l->state;
  out->holder = lease_held(l);
  memcpy(out->id, l->id, sizeof(out->id));
}

void lease_close(td_lease *l, void (*done)(void *ud), void *ud) {
  if (l->state == LEASE_RELEASING || l->state == LEASE_CLOSING || l->state == LEASE_CLOSED) return;
  l->done = done;
  l->done_ud = ud;
  bool was_holder = l->holder;
  l->holder = false; /* no role callback: the owner is shutting down */
  uv_timer_stop(&l->round_timer);
  uv_timer_stop(&l->deadline_timer);
  if (rconn_ready(&l->conn)) {
    const char *rel[] = {"EVAL", release_script, "1", l->key, l->id};
    if (rconn_command_argv(&l->conn, TAG_RELEASE, 5, rel, NULL) == 0) {
      l->state = LEASE_RELEASING;
      if (was_holder) log_lease(TD_LOG_INFO, "lease_released", l, NULL);
      uv_timer_start(&l->round_timer, on_round_timer, LEASE_RELEASE_TIMEOUT_MS, 0);
      return;
    }
  }
  l->state = LEASE_CLOSING;
  free(l->next_url);
  l->next_url = NULL;
  if (l->map && !l->conn_url) { /* never connected: only the timers and the map */
    l->closes_pending = 3;
    uv_close((uv_handle_t *)&l->round_timer, on_handle_closed);
    uv_close((uv_handle_t *)&l->deadline_timer, on_handle_closed);
    rcl_close(l->map, map_closed, l);
    return;
  }
  rconn_close(&l->conn);
}
