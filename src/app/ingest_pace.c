/* POST /quotes answers paced by Redis's backlog (see ingest_pace.h). */
#include "ingest_pace.h"

#include <stdlib.h>
#include <string.h>

#include "market/pipeline.h"
#include "market/publisher.h"

typedef struct pace_waiter {
  struct pace_waiter *next, *prev;
  ingest_pace *pace;
  td_request *req;
  uint64_t since_ms;
  size_t len;
  char body[]; /* the 202's JSON */
} pace_waiter;

struct ingest_pace {
  td_app *app;
  uint32_t max_backlog;
  uv_check_t check; /* after every loop iteration: Redis replies came in */
  uv_timer_t tick;  /* wakes an idle loop, and bounds the wait */
  bool active;      /* check and tick started */
  pace_waiter *head, *tail;
  ingest_pace_stats stats;
};

/* Unanswered PUBLISH commands and outbox entries, over all publishers; or
 * 0 when one is not connected (then nothing is waited for). */
static uint64_t backlog(const ingest_pace *p) {
  struct pub_stats s;
  if (!pipeline_publisher_stats(p->app->pipeline, &s)) return 0;
  return (uint64_t)s.inflight + s.outbox;
}

static void unlink_waiter(ingest_pace *p, pace_waiter *w) {
  if (w->prev) w->prev->next = w->next;
  else p->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else p->tail = w->prev;
  p->stats.waiting--;
}

static void answer(ingest_pace *p, pace_waiter *w) {
  unlink_waiter(p, w);
  td_request *req = w->req;
  req->on_abort = NULL;
  http_respond(req, 202, "application/json", w->body, w->len, NULL);
  free(w);
}

static void stop_if_idle(ingest_pace *p) {
  if (p->head || !p->active) return;
  uv_check_stop(&p->check);
  uv_timer_stop(&p->tick);
  p->active = false;
}

/* Oldest first: once Redis is under half the backlog, or a waiter is due. */
static void release(ingest_pace *p) {
  uint64_t now = uv_now(p->app->loop);
  bool caught_up = backlog(p) <= p->max_backlog / 2;
  while (p->head && (caught_up || now - p->head->since_ms >= INGEST_PACE_MAX_WAIT_MS)) {
    if (!caught_up) p->stats.expired++;
    answer(p, p->head);
  }
  stop_if_idle(p);
}

static void on_check(uv_check_t *h) { release(h->data); }
static void on_tick(uv_timer_t *h) { release(h->data); }

/* The connection went away while its answer waited. */
static void on_abort(td_request *req, void *data) {
  (void)req;
  pace_waiter *w = data;
  ingest_pace *p = w->pace;
  unlink_waiter(p, w);
  free(w);
  stop_if_idle(p);
}

ingest_pace *pace_new(td_app *app, uint32_t max_backlog) {
  ingest_pace *p = calloc(1, sizeof(*p));
  if (!p) return NULL;
  p->app = app;
  p->max_backlog = max_backlog;
  uv_check_init(app->loop, &p->check);
  uv_timer_init(app->loop, &p->tick);
  p->check.data = p->tick.data = p;
  return p;
}

void pace_respond(ingest_pace *p, td_request *req, const char *body, size_t len) {
  pace_waiter *w = NULL;
  if (p->max_backlog == 0 || p->app->shutting_down || backlog(p) <= p->max_backlog ||
      !(w = malloc(sizeof(*w) + len))) {
    http_respond(req, 202, "application/json", body, len, NULL);
    return;
  }
  *w = (pace_waiter){.pace = p, .req = req, .since_ms = uv_now(p->app->loop), .len = len, .prev = p->tail};
  memcpy(w->body, body, len);
  if (p->tail) p->tail->next = w;
  else p->head = w;
  p->tail = w;
  p->stats.waiting++;
  p->stats.paced++;
  http_defer(req, on_abort, w);
  if (!p->active) {
    uv_check_start(&p->check, on_check);
    uv_timer_start(&p->tick, on_tick, INGEST_PACE_TICK_MS, INGEST_PACE_TICK_MS);
    p->active = true;
  }
}

void pace_release_all(ingest_pace *p) {
  while (p->head) answer(p, p->head);
  stop_if_idle(p);
}

void pace_get_stats(const ingest_pace *p, ingest_pace_stats *out) { *out = p->stats; }

void pace_close(ingest_pace *p) {
  pace_release_all(p);
  uv_close((uv_handle_t *)&p->check, NULL);
  uv_close((uv_handle_t *)&p->tick, NULL);
}

void pace_free(ingest_pace *p) { free(p); }
