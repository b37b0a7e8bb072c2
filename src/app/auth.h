/* Access control for subscribers (/ws, /stream), off unless --auth: an
 * HS256 JWT from the Authorization header or a `token` query parameter, its
 * `exp`, and an optional `symbols` claim; and, for WebSocket handshakes, the
 * Origin against --allowed-origins (cross-site WebSocket hijacking). */
#ifndef TD_AUTH_H
#define TD_AUTH_H

#include <stdbool.h>

#include "http/http.h"
#include "app/jwt.h"
#include "stream/hub.h"

typedef struct {
  uint64_t ok, missing, invalid, expired, forbidden_origin, forbidden_symbol;
  uint64_t forbidden_pattern;   /* of forbidden_symbol, patterns ("*", "BRK.*") the token does not cover */
} auth_stats;

extern auth_stats auth_counters;

/* Checks the request. On success returns true and, with --auth, fills
 * `claims` (release with jwt_claims_free); with --auth off, claims allow
 * every symbol. On failure answers 401/403 itself and returns false. */
bool auth_subscriber(td_request *req, bool websocket, jwt_claims *claims);
/* false when --auth is on and the claims do not cover `symbol`. */
bool auth_symbol_allowed(const jwt_claims *claims, const char *symbol);
/* The same checks as the stream layer asks for them (hub options). */
extern const td_stream_access auth_stream_access;

#endif
