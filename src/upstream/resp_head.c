/* Reading a response head (resp_head.h). */
#include "upstream/resp_head.h"

#include <string.h>
#include <strings.h>

static int count_span(resp_head *r, size_t len) {
  r->head_bytes += len;
  return r->head_bytes > r->max_head ? HPE_USER : 0;
}

static int on_status(llhttp_t *h, const char *at, size_t len) { return count_span(h->data, len); }

static int on_field(llhttp_t *h, const char *at, size_t len) {
  resp_head *r = h->data;
  size_t room = sizeof(r->name) - 1 - r->name_len;
  size_t n = len < room ? len : room;
  memcpy(r->name + r->name_len, at, n);
  r->name_len += n;
  r->name[r->name_len] = 0;
  return count_span(r, len);
}

static int on_value(llhttp_t *h, const char *at, size_t len) {
  resp_head *r = h->data;
  size_t room = sizeof(r->value) - 1 - r->value_len;
  if (len > room) r->value_over = true;
  size_t n = len < room ? len : room;
  memcpy(r->value + r->value_len, at, n);
  r->value_len += n;
  r->value[r->value_len] = 0;
  return count_span(r, len);
}

static int on_value_complete(llhttp_t *h) {
  resp_head *r = h->data;
  for (int i = 0; r->wanted && r->wanted[i] && i < RESP_HEAD_MAX_WANTED; i++) {
    if (strcasecmp(r->name, r->wanted[i]) != 0) continue;
    r->seen[i] = true;
    if (!r->value_over) memcpy(r->values[i], r->value, r->value_len + 1);
    break;
  }
  r->name_len = r->value_len = 0;
  r->name[0] = r->value[0] = 0;
  r->value_over = false;
  return 0;
}

static int on_headers_complete(llhttp_t *h) {
  resp_head *r = h->data;
  r->status = h->status_code;
  r->done = true;
  return r->cb->on_head ? r->cb->on_head(r) : 0;
}

static int on_body(llhttp_t *h, const char *at, size_t len) {
  resp_head *r = h->data;
  return r->cb->on_body ? r->cb->on_body(r, at, len) : 0;
}

static int on_message_complete(llhttp_t *h) {
  resp_head *r = h->data;
  return r->cb->on_complete ? r->cb->on_complete(r) : 0;
}

static const llhttp_settings_t settings = {
    .on_status = on_status,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_header_value_complete = on_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void resp_head_init(resp_head *r, size_t max_head, const char *const *wanted, const resp_head_callbacks *cb,
                    void *owner) {
  memset(r, 0, sizeof(*r));
  r->max_head = max_head;
  r->wanted = wanted;
  r->cb = cb;
  r->owner = owner;
  llhttp_init(&r->parser, HTTP_RESPONSE, &settings);
  r->parser.data = r;
}

bool resp_head_too_large(const resp_head *r) { return r->head_bytes > r->max_head; }
