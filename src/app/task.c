/* Task registry and state machine (see task.h for the states).
 *
 * Memory per task: the struct below (about 96 bytes) plus the request data
 * it captured, plus an 8-byte slot in the id table kept at most 75% full.
 * Queues are intrusive singly-linked FIFOs through `next`: a task is in
 * exactly one of pending, phase[k] or finished at any time. */
#include "app/task.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "http/http.h"
#include "base/log.h"
#include "task_table.h"
#include "base/td_limits.h"
#include "base/uuid.h"
#include "base/rng.h"
#include "base/fnv1a.h"
#include "base/url.h"
#include "base/utf8.h"

/* The id table starts here and doubles at 75% load (task_table.h). */
#define TASK_TABLE_INITIAL 1024

struct td_task {
  uint8_t id[16];                               /* first: the id table reads it there */
  td_task *next;
  uint64_t created_ms, started_ms, finished_ms; /* wall clock, ms since the epoch; 0: not yet */
  uint64_t deadline;                            /* loop time when the current phase or retention ends */
  uint8_t state;
  uint8_t phase;                                /* 1-based while running; the last phase reached after */
  uint8_t fails;                                /* drawn at start: this task will fail */
  uint8_t method_len;
  uint16_t ua_len, path_len, query_len;
  char ip[46];
  char data[];                                  /* method, user agent, path, query: not NUL-terminated */
};
_Static_assert(offsetof(td_task, id) == 0, "task_table.h: an entry starts with its id");

typedef struct {
  td_task *head, *tail;
  uint64_t count;
} task_queue;

struct td_tasks {
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_check_t check;        /* starts pending tasks once the loop iteration's I/O is done */
  const td_config *cfg;
  task_queue pending;
  task_queue phases[TD_MAX_TASK_PHASES];
  task_queue finished;
  ttab ids;                /* id -> task */
  uint8_t recent[TD_TASK_RECENT][16];
  size_t recent_next, recent_count;
  uint64_t rng;
  task_stats stats;
  task_observer observer;
  void *observer_ud;
  uint64_t armed_for;      /* deadline the timer is set for; 0: not armed */
};

static const char *state_names[] = {"pending", "running", "completed", "failed", "cancelled"};
static const char simulated_error[] = "simulated error in the last phase";

const char *task_state_name(task_state s) { return state_names[s]; }
const uint8_t *task_id(const td_task *t) { return t->id; }
task_state task_get_state(const td_task *t) { return (task_state)t->state; }

int task_state_parse(const char *name) {
  for (int i = 0; i <= TASK_CANCELLED; i++)
    if (!strcmp(name, state_names[i])) return i;
  return -1;
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}


/* ---- queues --------------------------------------------------------------- */

static void queue_push(task_queue *q, td_task *t) {
  t->next = NULL;
  if (q->tail) q->tail->next = t;
  else q->head = t;
  q->tail = t;
  q->count++;
}

static td_task *queue_pop(task_queue *q) {
  td_task *t = q->head;
  if (!t) return NULL;
  q->head = t->next;
  if (!q->head) q->tail = NULL;
  q->count--;
  t->next = NULL;
  return t;
}

/* ---- logging and observing -------------------------------------------------- */

static void log_task(const td_task *t, td_log_level level, const char *event) {
  td_logline *l = log_begin(level, event);
  if (!l) return;
  char id[UUID_STR_LEN + 1];
  uuid_format(t->id, id);
  log_str(l, "task_id", id);
  if (t->state == TASK_RUNNING) log_int(l, "phase", t->phase);
  if (t->state == TASK_COMPLETED || t->state == TASK_FAILED)
    log_int(l, "duration_ms", (int64_t)(t->finished_ms - t->started_ms));
  if (t->state == TASK_FAILED) log_str(l, "error", simulated_error);
  if (!strcmp(event, "task_started")) {
    log_strn(l, "path", t->data + t->method_len + t->ua_len, t->path_len);
    log_str(l, "client_ip", t->ip);
  }
  log_end(l);
}

static void notify(td_tasks *ts, const td_task *t) {
  if (ts->observer) ts->observer(ts->observer_ud, t);
}

/* ---- the state machine ------------------------------------------------------- */

static void arm_timer(td_tasks *ts);

static void finish(td_tasks *ts, td_task *t, task_state state) {
  t->state = (uint8_t)state;
  t->finished_ms = wall_ms();
  t->deadline = uv_now(ts->loop) + (uint64_t)ts->cfg->task_retention_ms;
  ts->stats.active--;
  if (state == TASK_COMPLETED) ts->stats.completed++;
  else if (state == TASK_FAILED) ts->stats.failed++;
  else ts->stats.cancelled++;
  log_task(t, state == TASK_FAILED ? TD_LOG_ERROR : TD_LOG_INFO,
           state == TASK_COMPLETED ? "task_completed" : state == TASK_FAILED ? "task_failed" : "task_cancelled");
  notify(ts, t);
  queue_push(&ts->finished, t);
  /* the finished cap: the oldest finished task goes first */
  while (ts->finished.count > (uint64_t)ts->cfg->max_finished_tasks) {
    td_task *old = queue_pop(&ts->finished);
    ttab_remove(&ts->ids, old->id);
    free(old);
    ts->stats.evicted++;
  }
}

static void enter_phase(td_tasks *ts, td_task *t, int phase) {
  t->phase = (uint8_t)phase;
  t->deadline = uv_now(ts->loop) + (uint64_t)ts->cfg->task_phases_ms[phase - 1];
  queue_push(&ts->phases[phase - 1], t);
  log_task(t, TD_LOG_INFO, phase == 1 ? "task_started" : "task_phase");
  notify(ts, t);
}

/* Pending tasks start here, after the loop iteration that created them has
 * written their responses. */
static void on_check(uv_check_t *h) {
  td_tasks *ts = h->data;
  td_task *t;
  while ((t = queue_pop(&ts->pending))) {
    ts->stats.pending--;
    t->state = TASK_RUNNING;
    t->started_ms = wall_ms();
    enter_phase(ts, t, 1);
  }
  uv_check_stop(&ts->check);
  arm_timer(ts);
}

static void advance(td_tasks *ts, uint64_t now) {
  int n = ts->cfg->task_phase_count;
  /* last phase first, so a task moves at most one phase per pass */
  for (int k = n - 1; k >= 0; k--) {
    task_queue *q = &ts->phases[k];
    while (q->head && q->head->deadline <= now) {
      td_task *t = queue_pop(q);
      if (k + 1 < n) enter_phase(ts, t, k + 2);
      else finish(ts, t, t->fails ? TASK_FAILED : TASK_COMPLETED);
    }
  }
  while (ts->finished.head && ts->finished.head->deadline <= now) {
    td_task *t = queue_pop(&ts->finished);
    ttab_remove(&ts->ids, t->id);
    free(t);
    ts->stats.expired++;
  }
}

static void on_timer(uv_timer_t *h) {
  td_tasks *ts = h->data;
  ts->armed_for = 0;
  advance(ts, uv_now(ts->loop));
  arm_timer(ts);
}

/* One timer for every task: it fires at the earliest head deadline. */
static void arm_timer(td_tasks *ts) {
  uint64_t next = UINT64_MAX;
  for (int k = 0; k < ts->cfg->task_phase_count; k++)
    if (ts->phases[k].head && ts->phases[k].head->deadline < next) next = ts->phases[k].head->deadline;
  if (ts->finished.head && ts->finished.head->deadline < next) next = ts->finished.head->deadline;
  if (next == UINT64_MAX) {
    uv_timer_stop(&ts->timer);
    ts->armed_for = 0;
    return;
  }
  if (ts->armed_for == next) return;
  uint64_t now = uv_now(ts->loop);
  uv_timer_start(&ts->timer, on_timer, next > now ? next - now : 0, 0);
  ts->armed_for = next;
}

/* ---- public API -------------------------------------------------------------- */

td_tasks *tasks_new(uv_loop_t *loop, const td_config *cfg) {
  td_tasks *ts = calloc(1, sizeof(*ts));
  if (!ts) return NULL;
  if (ttab_init(&ts->ids, TASK_TABLE_INITIAL) < 0) {
    free(ts);
    return NULL;
  }
  ts->loop = loop;
  ts->cfg = cfg;
  if (cfg->task_seed_set) ts->rng = cfg->task_seed;
  else uuid_random_bytes(&ts->rng, sizeof(ts->rng));
  if (ts->rng == 0) ts->rng = 0x9E3779B97F4A7C15ULL; /* the generator must not start at 0 */
  uv_timer_init(loop, &ts->timer);
  uv_check_init(loop, &ts->check);
  ts->timer.data = ts->check.data = ts;
  return ts;
}

static size_t clamp(size_t n, size_t max) { return n < max ? n : max; }

td_task *tasks_start(td_tasks *ts, const task_origin *o, bool *rejected) {
  *rejected = false;
  if (ts->stats.active >= (uint64_t)ts->cfg->max_tasks) {
    ts->stats.rejected++;
    *rejected = true;
    return NULL;
  }
  size_t mlen = clamp(strlen(o->method), 16), ulen = clamp(o->user_agent_len, TD_TASK_MAX_UA);
  size_t plen = clamp(o->path_len, TD_TASK_MAX_PATH), qlen = clamp(o->query_len, TD_TASK_MAX_QUERY);
  td_task *t = malloc(sizeof(*t) + mlen + ulen + plen + qlen);
  if (!t) return NULL;
  memset(t, 0, sizeof(*t));
  if (uuid_v4(t->id) != 0) {
    free(t);
    return NULL;
  }
  t->method_len = (uint8_t)mlen;
  t->ua_len = (uint16_t)ulen;
  t->path_len = (uint16_t)plen;
  t->query_len = (uint16_t)qlen;
  char *d = t->data;
  memcpy(d, o->method, mlen);
  if (ulen) memcpy(d + mlen, o->user_agent, ulen);
  memcpy(d + mlen + ulen, o->path, plen);
  if (qlen) memcpy(d + mlen + ulen + plen, o->query, qlen);
  snprintf(t->ip, sizeof(t->ip), "%s", o->client_ip ? o->client_ip : "");
  t->created_ms = wall_ms();
  t->state = TASK_PENDING;
  t->fails = rng_unit(&ts->rng) < ts->cfg->task_error_rate;
  if (ttab_insert(&ts->ids, t) < 0) {
    free(t);
    return NULL;
  }
  queue_push(&ts->pending, t);
  memcpy(ts->recent[ts->recent_next], t->id, 16);
  ts->recent_next = (ts->recent_next + 1) % TD_TASK_RECENT;
  if (ts->recent_count < TD_TASK_RECENT) ts->recent_count++;
  ts->stats.created++;
  ts->stats.active++;
  ts->stats.pending++;
  uv_check_start(&ts->check, on_check);
  notify(ts, t);
  return t;
}

const td_task *tasks_find(td_tasks *ts, const uint8_t id[16]) { return ttab_find(&ts->ids, id); }

void tasks_cancel_all(td_tasks *ts, const char *reason) {
  td_task *t;
  while ((t = queue_pop(&ts->pending))) {
    ts->stats.pending--;
    finish(ts, t, TASK_CANCELLED);
  }
  for (int k = 0; k < ts->cfg->task_phase_count; k++)
    while ((t = queue_pop(&ts->phases[k]))) finish(ts, t, TASK_CANCELLED);
  td_logline *l = log_begin(TD_LOG_INFO, "tasks_cancelled");
  if (l) { log_str(l, "reason", reason); log_int(l, "cancelled", (int64_t)ts->stats.cancelled); log_end(l); }
}

void tasks_stats(const td_tasks *ts, task_stats *out) {
  *out = ts->stats;
  out->running = ts->stats.active - ts->stats.pending;
  out->retained = ts->finished.count;
}

void tasks_set_observer(td_tasks *ts, task_observer cb, void *ud) {
  ts->observer = cb;
  ts->observer_ud = ud;
}

/* A time as ISO 8601 UTC with milliseconds, or null when it has not come. */
static void put_iso(jsonw *w, const char *key, uint64_t ms) {
  if (!ms) {
    jw_null(w, key);
    return;
  }
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char buf[64]; /* room for any int the compiler imagines in tm */
  snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
  jw_str(w, key, buf);
}

/* A request string as sent, or null when it is not UTF-8. */
static void put_utf8(jsonw *w, const char *key, const char *s, size_t n) {
  if (utf8_valid(s, n)) jw_strn(w, key, s, n);
  else jw_null(w, key);
}

/* Query parameters the task keeps at most: each takes at least "k=" or "&k". */
#define TASK_QUERY_PAIRS_MAX (TD_TASK_MAX_QUERY / 2 + 1)
/* Slots of the table that finds repeated keys: a power of two, at least
 * twice TASK_QUERY_PAIRS_MAX so that probes stay short. */
#define TASK_QUERY_SLOTS 1024

/* Query parameters as an object, percent-decoded; a repeated key keeps the
 * place of its first and the value of its last occurrence, and a key or
 * value that is not UTF-8 is left out. A decoded NUL ends a key or value. */
static void put_query(jsonw *w, const char *key, const char *q, size_t n) {
  char dec[2 * (TD_TASK_MAX_QUERY + 1)];
  struct {
    size_t k, v;   /* offsets in dec */
    size_t last;   /* a first occurrence: the value of its key's last one */
    bool repeat;
  } pairs[TASK_QUERY_PAIRS_MAX];
  int16_t slot[TASK_QUERY_SLOTS];
  memset(slot, 0xff, sizeof(slot));
  size_t np = 0, used = 0;
  const char *pos = q, *end = q + n, *k, *v;
  size_t kn, vn;
  while (np < TASK_QUERY_PAIRS_MAX && url_query_next(&pos, end, &k, &kn, &v, &vn)) {
    char *kd = dec + used;
    long kl = kn > 0 ? url_decode(k, kn, kd, sizeof(dec) - used, URL_DECODE_FORM) : -1;
    if (kl < 0) continue;
    char *vd = kd + kl + 1;
    long vl = url_decode(v, vn, vd, sizeof(dec) - used - (size_t)kl - 1, URL_DECODE_FORM);
    size_t klen = strlen(kd);
    if (vl < 0 || !utf8_valid(kd, klen) || !utf8_valid(vd, strlen(vd))) continue;
    size_t h = fnv1a(kd, klen) & (TASK_QUERY_SLOTS - 1);
    while (slot[h] >= 0 && strcmp(dec + pairs[slot[h]].k, kd) != 0) h = (h + 1) & (TASK_QUERY_SLOTS - 1);
    pairs[np].k = used;
    pairs[np].v = used + (size_t)kl + 1;
    pairs[np].last = pairs[np].v;
    pairs[np].repeat = slot[h] >= 0;
    if (slot[h] >= 0) pairs[slot[h]].last = pairs[np].v;
    else slot[h] = (int16_t)np;
    used += (size_t)kl + 1 + (size_t)vl + 1;
    np++;
  }
  jw_object(w, key);
  for (size_t i = 0; i < np; i++)
    if (!pairs[i].repeat) jw_str(w, dec + pairs[i].k, dec + pairs[i].last);
  jw_end(w);
}

void task_write_json(jsonw *w, const char *key, const td_tasks *ts, const td_task *t) {
  char id[UUID_STR_LEN + 1];
  uuid_format(t->id, id);
  jw_object(w, key);
  jw_str(w, "id", id);
  jw_str(w, "state", state_names[t->state]);
  if (t->phase) jw_i64(w, "phase", t->phase);
  else jw_null(w, "phase");
  jw_i64(w, "phases", ts->cfg->task_phase_count);
  put_iso(w, "created_at", t->created_ms);
  put_iso(w, "started_at", t->started_ms);
  put_iso(w, "finished_at", t->finished_ms);
  if (t->state == TASK_FAILED) jw_str(w, "error", simulated_error);
  else if (t->state == TASK_CANCELLED) jw_str(w, "error", "cancelled: server shutting down");
  else jw_null(w, "error");
  const char *d = t->data;
  jw_object(w, "request");
  jw_str(w, "client_ip", t->ip);
  jw_strn(w, "method", d, t->method_len);
  put_utf8(w, "user_agent", d + t->method_len, t->ua_len);
  put_utf8(w, "path", d + t->method_len + t->ua_len, t->path_len);
  put_query(w, "query", d + t->method_len + t->ua_len + t->path_len, t->query_len);
  jw_end(w);
  jw_end(w);
}

size_t tasks_recent(td_tasks *ts, int limit, int state, const td_task **out) {
  size_t n = 0;
  for (size_t i = 0; i < ts->recent_count && (int)n < limit; i++) {
    size_t idx = (ts->recent_next + TD_TASK_RECENT - 1 - i) % TD_TASK_RECENT;
    const td_task *t = tasks_find(ts, ts->recent[idx]);
    if (t && (state < 0 || t->state == state)) out[n++] = t;
  }
  return n;
}

void tasks_close(td_tasks *ts) {
  uv_close((uv_handle_t *)&ts->timer, NULL);
  uv_close((uv_handle_t *)&ts->check, NULL);
}

void tasks_free(td_tasks *ts) {
  ttab_each(&ts->ids, free);
  ttab_release(&ts->ids);
  free(ts);
}
