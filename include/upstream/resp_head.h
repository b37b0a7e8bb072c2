/* The one reader of HTTP/1.1 responses for tickerd's two clients (the
 * HTTPS client and the WebSocket client's handshake): llhttp in response
 * mode, the head bounded in size, the status, and the values of a few
 * headers the caller names. The body, if any, goes to the caller's
 * callback. The caller feeds bytes with llhttp_execute(&r->parser, ...)
 * and reads the pause/upgrade results itself. */
#ifndef TD_RESP_HEAD_H
#define TD_RESP_HEAD_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>

/* Headers one reader keeps, and the longest value kept (a longer one is
 * marked seen but not kept). */
#define RESP_HEAD_MAX_WANTED 4
#define RESP_HEAD_VALUE_MAX 255
/* Header names longer than this cannot be wanted. */
#define RESP_HEAD_NAME_MAX 31

typedef struct resp_head resp_head;

typedef struct {
  /* The head is complete (status and wanted values set); nonzero stops parsing. */
  int (*on_head)(resp_head *r);
  int (*on_body)(resp_head *r, const char *at, size_t len);
  int (*on_complete)(resp_head *r);
} resp_head_callbacks;

struct resp_head {
  llhttp_t parser;
  const resp_head_callbacks *cb;   /* members may be NULL */
  void *owner;
  size_t max_head;
  size_t head_bytes;
  bool done;            /* the head is complete */
  int status;           /* 0 before the head is complete */
  const char *const *wanted;   /* header names, NULL-terminated, at most RESP_HEAD_MAX_WANTED */
  bool seen[RESP_HEAD_MAX_WANTED];
  char values[RESP_HEAD_MAX_WANTED][RESP_HEAD_VALUE_MAX + 1];
  char name[RESP_HEAD_NAME_MAX + 1];
  size_t name_len;
  char value[RESP_HEAD_VALUE_MAX + 1];
  size_t value_len;
  bool value_over;
};

void resp_head_init(resp_head *r, size_t max_head, const char *const *wanted, const resp_head_callbacks *cb,
                    void *owner);
/* The head went over max_head (parsing stopped with HPE_USER). */
bool resp_head_too_large(const resp_head *r);

#endif
