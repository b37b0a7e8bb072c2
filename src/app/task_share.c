/* Finished tasks in Redis for the whole fleet; see task_share.h. */
#include "task_share.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonw.h"
#include "base/log.h"
#include "base/uuid.h"
#include "redis/rkv.h"

#define KEY_LEN (sizeof(TSHARE_KEY_PREFIX) - 1 + UUID_STR_LEN)

struct task_share {
  td_rkv *kv;
  uint32_t ttl_ms;
};

/* A request waiting for Redis's answer. */
typedef struct {
  td_request *req;
  rkv_get *get;
} share_waiter;

static size_t key_of(const uint8_t id[16], char out[KEY_LEN + 1]) {
  memcpy(out, TSHARE_KEY_PREFIX, sizeof(TSHARE_KEY_PREFIX) - 1);
  uuid_format(id, out + sizeof(TSHARE_KEY_PREFIX) - 1);
  return KEY_LEN;
}

task_share *tshare_new(uv_loop_t *loop, const td_config *cfg) {
  task_share *sh = calloc(1, sizeof(*sh));
  if (!sh) return NULL;
  const char *err = NULL;
  rkv_options o = {.queue_max = (uint32_t)cfg->task_share_queue, .conn = {.name = "tasks"}};
  sh->kv = rkv_new(loop, cfg->redis_url, &o, &err);
  if (!sh->kv) {
    fprintf(stderr, "tickerd: shared tasks: %s\n", err ? err : "cannot create");
    free(sh);
    return NULL;
  }
  /* the record lives as long as the task would here */
  sh->ttl_ms = cfg->task_retention_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)cfg->task_retention_ms;
  rkv_start(sh->kv);
  return sh;
}

void tshare_task_changed(task_share *sh, const td_tasks *ts, const td_task *t) {
  task_state s = task_get_state(t);
  if (s != TASK_COMPLETED && s != TASK_FAILED && s != TASK_CANCELLED) return;
  if (sh->ttl_ms == 0) return; /* not retained here either */
  /* the same JSON GET /tasks/{id} answers here */
  jsonw w;
  jw_init(&w, 0);
  task_write_json(&w, NULL, ts, t);
  if (!w.failed) {
    char key[KEY_LEN + 1];
    rkv_put(sh->kv, key, key_of(task_id(t), key), w.p, w.len, sh->ttl_ms);
  }
  jw_free(&w);
}

static void respond(td_request *req, rkv_result res, const char *value, size_t len, const char *why) {
  if (res == RKV_FOUND) {
    http_respond(req, 200, "application/json", value, len, NULL);
  } else if (res == RKV_MISSING) {
    http_error(req, 404, "unknown_task",
               "no such task (unknown, still running on another instance, or expired after the retention time)",
               NULL);
  } else {
    td_logline *l = log_begin(TD_LOG_WARN, "task_lookup_failed");
    if (l) { log_str(l, "reason", why ? why : "?"); log_end(l); }
    http_error(req, 503, "task_lookup_unavailable",
               "not held here, and the fleet's shared task records (Redis) did not answer; retry later",
               "Retry-After: 1\r\n");
  }
}

static void on_record(void *ud, rkv_result res, const char *value, size_t len, const char *why) {
  share_waiter *w = ud;
  td_request *req = w->req;
  free(w);
  respond(req, res, value, len, why);
}

static void on_client_gone(td_request *req, void *data) {
  share_waiter *w = data;
  rkv_get_cancel(w->get);
  free(w);
}

void tshare_answer(task_share *sh, td_request *req, const uint8_t id[16]) {
  char key[KEY_LEN + 1];
  size_t kn = key_of(id, key);
  share_waiter *w = malloc(sizeof(*w));
  const char *why = "out of memory";
  if (w) {
    w->req = req;
    w->get = rkv_get_start(sh->kv, key, kn, on_record, w, &why);
  }
  if (!w || !w->get) {
    free(w);
    respond(req, RKV_UNAVAILABLE, NULL, 0, why);
    return;
  }
  http_defer(req, on_client_gone, w);
}

void tshare_status(const task_share *sh, jsonw *w) {
  rkv_stats s;
  rkv_get_stats(sh->kv, &s);
  JW_OBJECT(w, "shared");
  jw_bool(w, "connected", s.connected);
  JW_U64(w, "records_queued", s.queued);
  JW_U64(w, "records_written", s.written);
  JW_U64(w, "records_dropped", s.dropped);
  JW_U64(w, "records_failed", s.failed);
  JW_U64(w, "records_waiting", s.waiting);
  JW_U64(w, "batches", s.batches);
  JW_U64(w, "lookups", s.gets);
  JW_U64(w, "lookups_found", s.found);
  JW_U64(w, "lookups_missing", s.missing);
  JW_U64(w, "lookups_unavailable", s.unavailable);
  JW_U64(w, "lookups_timed_out", s.timeouts);
  JW_U64(w, "lookups_cancelled", s.cancelled);
  jw_end(w);
}

void tshare_close(task_share *sh, void (*done)(void *ud), void *ud) {
  rkv_close(sh->kv, done, ud);
  free(sh);
}
