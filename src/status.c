/* /status and readiness. Each section mirrors one module's counters. */
#include "status.h"

#include <stdio.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "server.h"
#include "task.h"
#include "version.h"

long status_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long pages_total, pages_rss;
  int n = fscanf(f, "%ld %ld", &pages_total, &pages_rss);
  fclose(f);
  return n == 2 ? pages_rss * sysconf(_SC_PAGESIZE) : -1;
}

static json_t *http_section(void) {
  const td_http_stats *s = &http_stats;
  return json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                   "open_connections", (json_int_t)s->open, "accepted", (json_int_t)s->accepted,
                   "rejected_full", (json_int_t)s->rejected_full, "requests", (json_int_t)s->requests, "responses",
                   "1xx", (json_int_t)s->responses[1], "2xx", (json_int_t)s->responses[2], "3xx",
                   (json_int_t)s->responses[3], "4xx", (json_int_t)s->responses[4], "5xx", (json_int_t)s->responses[5],
                   "bad_requests", (json_int_t)s->bad_requests, "too_large", (json_int_t)s->too_large,
                   "header_timeouts", (json_int_t)s->header_timeouts, "idle_timeouts", (json_int_t)s->idle_timeouts,
                   "write_timeouts", (json_int_t)s->write_timeouts, "backpressure_pauses",
                   (json_int_t)s->backpressure_pauses, "upgraded", (json_int_t)s->taken_over);
}

static json_t *tasks_section(td_app *app) {
  task_stats t;
  tasks_stats(app->tasks, &t);
  return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "active", (json_int_t)t.active,
                   "pending", (json_int_t)t.pending, "running", (json_int_t)t.running, "completed",
                   (json_int_t)t.completed, "failed", (json_int_t)t.failed, "cancelled", (json_int_t)t.cancelled,
                   "rejected", (json_int_t)t.rejected, "created", (json_int_t)t.created, "retained",
                   (json_int_t)t.retained, "expired", (json_int_t)t.expired, "evicted", (json_int_t)t.evicted);
}

json_t *status_json(td_app *app) {
  uint64_t uptime_ms = uv_now(app->loop) - app->start_ms;
  json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I}", "service", "tickerd", "version", TD_VERSION, "uptime_s",
                        (json_int_t)(uptime_ms / 1000), "rss_bytes", (json_int_t)status_rss_bytes(), "open_connections",
                        (json_int_t)http_stats.open);
  json_object_set_new(o, "http", http_section());
  json_object_set_new(o, "tasks", tasks_section(app));
  json_object_set_new(o, "log", json_pack("{s:I, s:I}", "warnings", (json_int_t)log_lines(TD_LOG_WARN), "errors",
                                          (json_int_t)log_lines(TD_LOG_ERROR)));
  return o;
}

bool status_ready(td_app *app, const char **why) {
  if (app->shutting_down) {
    *why = "shutting down";
    return false;
  }
  return true;
}
