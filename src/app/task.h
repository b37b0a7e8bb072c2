/* Background tasks: the seed's ~8 s job per request to / and /hello, as a
 * timer-driven state machine on the loop, no threads.
 *
 *   PENDING --(next loop iteration, after the response is written)--> RUNNING phase 1
 *   RUNNING phase k --(phase k's duration)--> RUNNING phase k+1
 *   RUNNING last phase --(its duration)--> COMPLETED, or FAILED with the configured probability
 *   PENDING/RUNNING --(shutdown)--> CANCELLED
 *   COMPLETED/FAILED/CANCELLED --(retention time, or the finished cap)--> freed
 *
 * Every phase lasts the same time for every task, so tasks leave each phase
 * in the order they entered it: each phase is a FIFO queue and one uv timer
 * serves them all. That keeps a task at about 100 bytes (see bench). */
#ifndef TD_TASK_H
#define TD_TASK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/jsonw.h"
#include "config.h"

typedef enum { TASK_PENDING, TASK_RUNNING, TASK_COMPLETED, TASK_FAILED, TASK_CANCELLED } task_state;

typedef struct td_tasks td_tasks;
typedef struct td_task td_task;

/* What a request leaves to its task. */
typedef struct {
  const char *client_ip;
  const char *user_agent;
  size_t user_agent_len;
  const char *method;
  const char *path;
  size_t path_len;
  const char *query;
  size_t query_len;
} task_origin;

typedef struct {
  uint64_t created, active, pending, running, completed, failed, cancelled, rejected, evicted, expired, retained;
} task_stats;

typedef void (*task_observer)(void *ud, const td_task *t);

td_tasks *tasks_new(uv_loop_t *loop, const td_config *cfg);
/* Creates a PENDING task. NULL with *rejected set when at capacity. */
td_task *tasks_start(td_tasks *ts, const task_origin *origin, bool *rejected);
const td_task *tasks_find(td_tasks *ts, const uint8_t id[16]);
/* Marks every pending and running task cancelled (and logs it). */
void tasks_cancel_all(td_tasks *ts, const char *reason);
void tasks_stats(const td_tasks *ts, task_stats *out);
/* Called on every state change (for the dashboard's tasks topic). */
void tasks_set_observer(td_tasks *ts, task_observer cb, void *ud);
/* The most recent tasks still known, newest first, at most `limit` into
 * out[]; `state` < 0 for any state. Returns how many. */
size_t tasks_recent(td_tasks *ts, int limit, int state, const td_task **out);
/* Closes the timer; tasks_free after the loop ran the close callbacks. */
void tasks_close(td_tasks *ts);
void tasks_free(td_tasks *ts);

/* The task as a JSON object (GET /tasks/{id}, the tasks topic). */
void task_write_json(jsonw *w, const char *key, const td_tasks *ts, const td_task *t);
const uint8_t *task_id(const td_task *t);
task_state task_get_state(const td_task *t);
const char *task_state_name(task_state s);
int task_state_parse(const char *name);

#endif
