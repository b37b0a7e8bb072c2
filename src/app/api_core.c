/* Core endpoints: the seed's / and /hello (each starts a background task),
 * /status, /healthz, /readyz, /tasks and /tasks/{id}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/api.h"
#include "app/app.h"
#include "http/http.h"
#include "llhttp.h"
#include "routes.h"
#include "http/server.h"
#include "status.h"
#include "app/task.h"
#include "task_share.h"
#include "base/jsonw.h"
#include "base/td_limits.h"
#include "base/uuid.h"
#include "base/version.h"

void api_respond_jsonw(td_request *req, int status, jsonw *w, const char *extra_headers) {
  if (w->failed) http_error(req, 500, "internal", "out of memory", NULL);
  else http_respond(req, status, "application/json", w->p, w->len, extra_headers);
  jw_free(w);
}

/* Starts the request's task; on capacity, answers 503 itself and returns false. */
static bool start_task(td_request *req, char id_out[UUID_STR_LEN + 1]) {
  const td_header *ua = http_header(req, "user-agent");
  task_origin o = {
    .client_ip = conn_peer_ip(req->conn),
    .user_agent = ua ? ua->value : NULL,
    .user_agent_len = ua ? ua->value_len : 0,
    .method = http_method_name(req),
    .path = req->path,
    .path_len = req->path_len,
    .query = req->query,
    .query_len = req->query_len,
  };
  bool rejected;
  td_task *t = tasks_start(req_app(req)->tasks, &o, &rejected);
  if (!t) {
    char retry[32];
    snprintf(retry, sizeof(retry), "Retry-After: %d\r\n", TD_TASK_RETRY_AFTER_S);
    http_error(req, 503, rejected ? "too_many_tasks" : "task_start_failed",
               rejected ? "the task table is full; retry later" : "could not start a task", retry);
    return false;
  }
  uuid_format(task_id(t), id_out);
  return true;
}

/* A browser asking for HTML at / gets the dashboard instead of JSON. */
static bool wants_html(const td_request *req) {
  const td_header *h = http_header(req, "accept");
  if (!h) return false;
  for (uint32_t i = 0; i + 9 <= h->value_len; i++)
    if (!strncmp(h->value + i, "text/html", 9)) return true;
  return false;
}

void api_root(td_request *req) {
  if (wants_html(req)) {
    api_dashboard(req);
    return;
  }
  char id[UUID_STR_LEN + 1];
  if (!start_task(req, id)) return;
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  JW_STR(&w, "message", "Welcome to tickerd: market data fan-out");
  JW_STR(&w, "version", TD_VERSION);
  jw_array(&w, "endpoints");
  int n;
  const td_route *routes = app_routes(&n);
  for (int i = 0; i < n; i++) {
    char line[96];
    snprintf(line, sizeof(line), "%s %s", routes[i].methods & ROUTE_GET ? "GET" : "POST", routes[i].pattern);
    jw_str(&w, NULL, line);
    if ((routes[i].methods & ROUTE_GET) && (routes[i].methods & ROUTE_POST)) {
      snprintf(line, sizeof(line), "POST %s", routes[i].pattern);
      jw_str(&w, NULL, line);
    }
  }
  jw_end(&w);
  JW_STR(&w, "task_id", id);
  jw_end(&w);
  api_respond_jsonw(req, 200, &w, NULL);
}

/* {"message":"Hello, World!","task_id":"<uuid>"} is 71 bytes. */
#define HELLO_BUF_INITIAL 128

void api_hello(td_request *req) {
  char id[UUID_STR_LEN + 1];
  if (!start_task(req, id)) return;
  jsonw w;
  jw_init(&w, HELLO_BUF_INITIAL);
  jw_object(&w, NULL);
  JW_STR(&w, "message", "Hello, World!");
  JW_STR(&w, "task_id", id);
  jw_end(&w);
  api_respond_jsonw(req, 200, &w, NULL);
}

/* The /status document is about 1.5 KB: start the writer with room for it. */
#define STATUS_BUF_INITIAL 4096

void api_status(td_request *req) {
  jsonw w;
  jw_init(&w, STATUS_BUF_INITIAL);
  status_write(req_app(req), &w);
  api_respond_jsonw(req, 200, &w, NULL);
}

void api_healthz(td_request *req) {
  static const char body[] = "{\"status\":\"ok\"}";
  http_respond(req, 200, "application/json", body, sizeof(body) - 1, NULL);
}

void api_readyz(td_request *req) {
  const char *why = NULL;
  bool ready = status_ready(req_app(req), &why);
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  JW_STR(&w, "status", ready ? "ready" : "not_ready");
  if (!ready) JW_STR(&w, "reason", why ? why : "starting");
  jw_end(&w);
  api_respond_jsonw(req, ready ? 200 : 503, &w, NULL);
}

void api_tasks_list(td_request *req) {
  char buf[32];
  int state = -1;
  long limit = TD_TASK_LIST_DEFAULT;
  if (http_query_int(req, "limit", 1, TD_TASK_RECENT, &limit) < 0) {
    http_error(req, 400, "bad_limit", "limit must be an integer from 1 to 1024", NULL);
    return;
  }
  if (http_query_param(req, "state", buf, sizeof(buf))) {
    state = task_state_parse(buf);
    if (state < 0) {
      http_error(req, 400, "bad_state", "state must be pending, running, completed, failed or cancelled", NULL);
      return;
    }
  }
  td_tasks *ts = req_app(req)->tasks;
  const td_task *found[TD_TASK_RECENT];
  size_t n = tasks_recent(ts, (int)limit, state, found);
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  JW_U64(&w, "count", n);
  jw_array(&w, "tasks");
  for (size_t i = 0; i < n; i++) task_write_json(&w, NULL, ts, found[i]);
  jw_end(&w);
  jw_end(&w);
  api_respond_jsonw(req, 200, &w, NULL);
}

void api_task_get(td_request *req) {
  uint8_t id[16];
  if (!uuid_parse(req->params[0], req->param_lens[0], id)) {
    http_error(req, 400, "bad_task_id", "a task id is a UUID (8-4-4-4-12 hex digits)", NULL);
    return;
  }
  const td_task *t = tasks_find(req_app(req)->tasks, id);
  if (!t && req_app(req)->share) {
    tshare_answer(req_app(req)->share, req, id); /* another instance's, maybe */
    return;
  }
  if (!t) {
    http_error(req, 404, "unknown_task", "no such task (unknown, or expired after the retention time)", NULL);
    return;
  }
  jsonw w;
  jw_init(&w, 0);
  task_write_json(&w, NULL, req_app(req)->tasks, t);
  api_respond_jsonw(req, 200, &w, NULL);
}
