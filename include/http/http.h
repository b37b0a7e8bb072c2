/* HTTP/1.x connections: one llhttp parser per connection, requests handled
 * one at a time in arrival order (so pipelined responses leave in order),
 * and one outgoing queue of shared buffers per connection that responses,
 * WebSocket frames and SSE events all go through.
 *
 * Life of a request: on_read (http_conn.c) -> llhttp callbacks copy the head into the
 * connection's head buffer -> on_message_complete pauses the parser ->
 * router_dispatch(req) -> a handler calls http_respond*() (now, or later
 * after http_defer()) -> the response is queued -> parsing resumes. */
#ifndef TD_HTTP_H
#define TD_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/td_limits.h"

typedef struct td_conn td_conn;

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

/* Bytes from the peer after a connection has been taken over (WebSocket,
 * SSE), and its end. `on_close` is called once, when the connection starts
 * closing; the owner must drop its pointer to the connection then. */
typedef struct {
  void (*on_data)(void *owner, const char *data, size_t len);
  void (*on_drain)(void *owner);       /* the queue became empty after conn_notify_drain */
  void (*on_close)(void *owner, const char *reason);
} td_stream_ops;

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
/* Serializes and frees `body` (steals the reference). */
void http_respond_json(td_request *req, int status, json_t *body, const char *extra_headers);
/* {"error":code,"message":message,"status":status} */
void http_error(td_request *req, int status, const char *code, const char *message, const char *extra_headers);
void http_defer(td_request *req, td_abort_cb on_abort, void *data);
/* Sends the head of a response after which the connection belongs to `ops`:
 * 200 for an event stream (no Content-Length), 101 for a WebSocket upgrade
 * (`extra_headers` carry Upgrade, Connection and Sec-WebSocket-Accept). */
void http_respond_stream(td_request *req, int status, const char *content_type, const char *extra_headers,
                         const td_stream_ops *ops, void *owner);
const char *http_status_text(int status);

/* ---- connections --------------------------------------------------------- */
/* Takes the connection over after the current request (101 upgrade already
 * written by the caller with conn_send). Bytes already read past the request
 * are handed to ops->on_data right away. */
void conn_take_over(td_conn *c, const td_stream_ops *ops, void *owner);
/* Queues a reference to `b` (the caller keeps its own). `tag` != 0 marks a
 * message that conn_conflate() may replace by a newer one with the same tag. */
int conn_send(td_conn *c, td_buf *b, uint32_t tag);
int conn_send_copy(td_conn *c, const void *p, size_t n);
size_t conn_queued_bytes(const td_conn *c);
/* Calls the owner's on_drain once, the next time the outgoing queue becomes
 * empty (the hub asks when a client goes over its soft limit; it costs
 * nothing per message otherwise). */
void conn_notify_drain(td_conn *c);
/* Drops queued (not yet written) messages that a later one with the same tag
 * supersedes; tags are 1..max_tag. Returns how many were dropped. */
size_t conn_conflate(td_conn *c, uint32_t max_tag);
void conn_close(td_conn *c, const char *reason);
/* Closes once everything queued has been written. */
void conn_end(td_conn *c);
bool conn_is_closing(const td_conn *c);
const char *conn_peer_ip(const td_conn *c);
uint64_t conn_id(const td_conn *c);

#endif
