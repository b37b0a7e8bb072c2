/* WebSocket sessions (GET /ws): counters for /status and /metrics. */
#ifndef TD_WS_SESSION_H
#define TD_WS_SESSION_H

#include <stdint.h>

typedef struct {
  uint64_t sessions, messages_in, bad_messages, protocol_errors, idle_closes;
} ws_stats;

extern ws_stats ws_counters;

#endif
