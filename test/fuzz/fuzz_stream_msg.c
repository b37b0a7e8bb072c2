/* libFuzzer: both parse modes of stream_msg on arbitrary bytes. Every
 * delivered message is encoded and the payload must be JSON that jansson
 * reads back, ending in a position smsg_payload_position understands. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stream_msg.h"

#define FUZZ_EPOCH "0123456789abcdef"

static void check_payload(void *ud, const smsg_msg *m) {
  uint64_t *seq = ud;
  td_buf *b = smsg_encode(m, ++*seq, FUZZ_EPOCH);
  if (!b) abort();
  json_error_t je;
  json_t *j = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &je);
  if (!j || !json_is_object(j)) abort();
  const json_t *s = json_object_get(j, m->kind == SMSG_NEWS ? "symbols" : "S");
  if (!s) abort();
  json_decref(j);
  uint64_t ps, pe;
  if (smsg_payload_position(b->data, b->len, &ps, &pe) != 0 || ps != *seq ||
      pe != 0x0123456789abcdefull)
    abort();
  if (!smsg_symbol_valid(m->symbol, m->symbol_len) || strlen(m->symbol) != m->symbol_len) abort();
  buf_unref(b);
}

static void on_control(void *ud, const smsg_control *c) {
  if (!c->msg || !c->obj) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint64_t seq = 0;
  char err[SMSG_ERR_MAX];
  err[0] = 0;
  int rc = smsg_parse_batch((const char *)data, size, check_payload, &seq, err);
  if (rc < 0 && (!err[0] || seq != 0)) abort();   /* rejected: a reason, nothing delivered */
  smsg_stats st = {0};
  seq = 0;
  int n = smsg_parse_stream((const char *)data, size, check_payload, on_control, &seq, &st);
  if (n >= 0 && (uint64_t)n != seq) abort();
  if (rc >= 0 && n < 0) abort();   /* what batch accepts, stream parses */
  /* The tail parser on raw bytes must never read outside them. */
  uint64_t a, b;
  smsg_payload_position((const char *)data, size, &a, &b);
  return 0;
}
