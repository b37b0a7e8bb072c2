/* HTTP/1.x requests and responses (http1.c): one llhttp parser per
 * connection, requests handled one at a time in arrival order (so pipelined
 * responses leave in order), each response one shared buffer on the
 * connection's byte queue (http/conn.h), which WebSocket frames and SSE
 * events go through too.
 *
 * Life of a request: the connection's bytes (conn.c) -> the reader's loop in
 * http1.c feeds llhttp, whose callbacks copy the head into the connection's
 * head buffer -> on_message_complete pauses the parser -> router_dispatch(req)
 * -> a handler calls http_respond*() (now, or later after http_defer()) ->
 * the response is queued and the request's state moves on -> the reader's
 * loop resumes parsing. */
#ifndef TD_HTTP_H
#define TD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/td_limits.h"
#include "http/conn.h"

typedef struct {
  const char *name;
  const char *value;
  uint32_t name_len;
  uint32_t value_len;
} td_header;

#define TD_REQUEST_ID_MAX 64

typedef struct td_request td_request;
typedef void (*td_abort_cb)(td_request *req, void *data);

struct td_request {
  td_conn *conn;
  void *user;             /* td_server_opts.user: the application's, opaque here */
  uint8_t method;         /* llhttp_method_t */
  uint8_t http_major, http_minor;
  bool keep_alive;        /* read inside llhttp's callbacks, where it is valid */
  bool upgrade;
  bool head;              /* HEAD: headers only */
  bool deferred;          /* the handler will answer later */
  bool responded;
  const char *path;       /* without the query, not decoded */
  size_t path_len;
  const char *query;      /* after '?', may be empty */
  size_t query_len;
  td_header headers[TD_HTTP_MAX_HEADERS];
  int header_count;
  const char *body;
  size_t body_len;
  char request_id[TD_REQUEST_ID_MAX + 1];
  char client_ip[48];
  uint64_t start_ns;
  td_abort_cb on_abort;   /* the connection went away while deferred */
  void *abort_data;
  int route_index;        /* set by the router, for per-route metrics */
  const char *params[2];  /* path segments matched by "*" in the route pattern */
  size_t param_lens[2];
};

/* ---- requests ------------------------------------------------------------ */
const td_header *http_header(const td_request *req, const char *name);
bool http_header_is(const td_request *req, const char *name, const char *value);
/* Copies query parameter `name` (percent-decoded) into out; false if absent. */
bool http_query_param(const td_request *req, const char *name, char *out, size_t out_size);
/* Room for the text of a query integer: a sign and the digits of a long. */
#define HTTP_QUERY_INT_MAX 24
/* Query parameter `name` as a decimal integer in [min, max] into *out: 1,
 * 0 when absent (out untouched), -1 when present but anything else (empty,
 * not a number, percent-encoded, out of range however many digits). */
int http_query_int(const td_request *req, const char *name, long min, long max, long *out);
const char *http_method_name(const td_request *req);

/* ---- responses ----------------------------------------------------------- */
/* `extra_headers` is NULL or complete header lines, each ending in "\r\n". */
void http_respond(td_request *req, int status, const char *content_type, const char *body, size_t len,
                  const char *extra_headers);
/* {"error":code,"message":message,"status":status} */
void http_error(td_request *req, int status, const char *code, const char *message, const char *extra_headers);
void http_defer(td_request *req, td_abort_cb on_abort, void *data);
/* Sends the head of a response after which the connection belongs to `ops`:
 * 200 for an event stream (no Content-Length), 101 for a WebSocket upgrade
 * (`extra_headers` carry Upgrade, Connection and Sec-WebSocket-Accept). */
void http_respond_stream(td_request *req, int status, const char *content_type, const char *extra_headers,
                         const td_stream_ops *ops, void *owner);
const char *http_status_text(int status);

#endif
