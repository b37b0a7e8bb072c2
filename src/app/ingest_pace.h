/* ingest_pace: POST /quotes is answered at the pace Redis takes PUBLISH.
 *
 * A client that POSTs faster than Redis takes PUBLISH would only fill the
 * publishers' conflating outbox: the quotes it sent get replaced by newer
 * ones (counted as conflated, never published) and the CPU spent on them is
 * lost. So while the publishers are connected and more than `max_backlog`
 * PUBLISH commands are unanswered (or the outbox holds anything), the 202 of
 * a POST waits until the backlog is back under half of that. A connection's
 * next request is not read before its answer, so each client is held to
 * Redis's pace by plain TCP backpressure.
 *
 * A Redis that is down is not waited for (the outbox conflates, as the
 * quote pipeline documents), nor one that stalls: no answer waits longer
 * than INGEST_PACE_MAX_WAIT_MS. */
#ifndef TD_INGEST_PACE_H
#define TD_INGEST_PACE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "app/app.h"
#include "http/http.h"

/* Longest an answer waits for Redis: past it Redis is stalled rather than
 * busy, and the client had better hear back (its quotes are queued). */
#define INGEST_PACE_MAX_WAIT_MS 2000
/* How often waiting answers are checked when the loop has nothing else to
 * do; Redis replies wake the loop (and the check) much more often. */
#define INGEST_PACE_TICK_MS 5

typedef struct ingest_pace ingest_pace;

typedef struct {
  uint64_t paced;   /* answers that waited for Redis */
  uint64_t expired; /* of those, answered after INGEST_PACE_MAX_WAIT_MS */
  uint32_t waiting; /* answers waiting now */
} ingest_pace_stats;

/* max_backlog 0: never wait. NULL on OOM. */
ingest_pace *pace_new(td_app *app, uint32_t max_backlog);
/* Answers `req` with 202 and `body` (copied) now, or once Redis caught up. */
void pace_respond(ingest_pace *p, td_request *req, const char *body, size_t len);
/* Answers every waiting request now (shutdown). */
void pace_release_all(ingest_pace *p);
void pace_get_stats(const ingest_pace *p, ingest_pace_stats *out);
/* Closes the handles; pace_free once the loop has run their close. */
void pace_close(ingest_pace *p);
void pace_free(ingest_pace *p);

#endif
