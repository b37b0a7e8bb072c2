/* GET /ws and GET /stream: the sessions are the stream layer's; the app
 * hands them its hub. */
#include "app/api.h"
#include "app/app.h"
#include "stream/ws_session.h"

void api_ws(td_request *req) { ws_session_open(req, req_app(req)->hub); }

void api_stream(td_request *req) { sse_session_open(req, req_app(req)->hub); }
