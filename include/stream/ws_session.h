/* WebSocket sessions (GET /ws) and event streams (GET /stream): the
 * handshake, one session per client, and counters for /status and /metrics. */
#ifndef TD_WS_SESSION_H
#define TD_WS_SESSION_H

#include <stdint.h>

#include "http/http.h"
#include "stream/hub.h"

typedef struct {
  uint64_t sessions, messages_in, bad_messages, protocol_errors, idle_closes;
} ws_stats;

extern ws_stats ws_counters;

/* Answers a WebSocket handshake and runs the session on the hub's clients. */
void ws_session_open(td_request *req, td_hub *hub);
/* Answers GET /stream?symbols=... with an event stream (sse.c). */
void sse_session_open(td_request *req, td_hub *hub);

#endif
