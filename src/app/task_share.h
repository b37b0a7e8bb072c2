/* Finished tasks shared through Redis, so that GET /tasks/{id} answers on
 * every instance of a fleet, not only the one that ran the task.
 *
 * When a task finishes (completed, failed, cancelled) its JSON, as
 * /tasks/{id} answers it, is queued as `SET tickerd:task:<id> <json> PX
 * <--task-retention-ms>` and written in pipelined batches (redis/rkv.h):
 * nothing is sent per request, and a put never waits. A GET /tasks/{id}
 * for an id this instance does not hold asks Redis (one GET, the request
 * deferred until the reply, at most RKV_GET_TIMEOUT_MS): 200 with the
 * record, 404 when there is none, 503 when Redis cannot answer.
 *
 * A task still running on another instance has no record yet: it answers
 * 404 until it finishes (starts are not written; that would double the
 * writes for a state that lasts seconds). */
#ifndef TD_TASK_SHARE_H
#define TD_TASK_SHARE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/jsonw.h"
#include "config.h"
#include "http/http.h"
#include "task.h"

/* Key of a task's record: the prefix and its UUID. */
#define TSHARE_KEY_PREFIX "tickerd:task:"

typedef struct task_share task_share;

/* NULL (with a message on stderr) on a bad Redis URL. Connects at once. */
task_share *tshare_new(uv_loop_t *loop, const td_config *cfg);
/* A task changed state: a finished one is queued for Redis. */
void tshare_task_changed(task_share *sh, const td_tasks *ts, const td_task *t);
/* Answers GET /tasks/{id} for an id not held here, from Redis. */
void tshare_answer(task_share *sh, td_request *req, const uint8_t id[16]);
/* The "shared" object of /status's tasks section. */
void tshare_status(const task_share *sh, jsonw *w);
void tshare_close(task_share *sh, void (*done)(void *ud), void *ud);

#endif
