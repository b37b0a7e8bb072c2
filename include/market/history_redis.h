/* history_redis: stream positions and history shared through Redis
 * (issue 15, part 3), so that any instance resumes any client.
 *
 * Per channel (quotes:AAPL) two keys with the channel as hash tag, so one
 * script touches one Cluster slot:
 *   tickerd:{quotes:AAPL}:pos   a hash: "e" the channel's epoch (16 hex),
 *                               "s" its last sequence number;
 *   tickerd:{quotes:AAPL}:hist  a Stream of the published payloads, entry id
 *                               0-<seq>, field "d", trimmed to MAXLEN ~ N.
 *
 * One Lua script per published message (EVALSHA, pipelined by the
 * publisher) creates the epoch if the channel has none, HINCRBYs the
 * sequence, appends the payload with its position to the stream and
 * PUBLISHes it, atomically. The epoch is per channel, not per fleet: a
 * fleet key would sit in another slot. A channel without its "pos" hash
 * (first message, FLUSHALL, eviction) gets a new epoch, made from the
 * publisher's nonce, the server's TIME and the channel, and its stream is
 * deleted: sequences restart at 1 and the stream ids (0-<seq>) with them,
 * so ids only have to increase within one epoch, and no position of an
 * earlier epoch is ever taken for one of the new.
 *
 * A resume reads, with one read-only script, the channel's epoch, its last
 * sequence and the stream entries after the client's position (XRANGE,
 * at most HR_REPLAY_MAX), on a connection of its own. */
#ifndef TD_HISTORY_REDIS_H
#define TD_HISTORY_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "base/buf.h"
#include "market/stream_msg.h"

/* Entries one resume reads from a stream at most: a client further behind
 * is told `recovered: false` and gets the latest quote. Covers the default
 * history (1,000) ten times over; bounded because the reply is held in
 * memory at once (~200 bytes an entry). */
#define HR_REPLAY_MAX 10000
/* "tickerd:{" + channel + "}:hist" */
#define HR_KEY_PREFIX "tickerd:{"
#define HR_KEY_MAX (sizeof(HR_KEY_PREFIX) + 256 + 8)
/* The tail smsg_encode writes with seq 0: ,"seq":0,"epoch":"<16 hex>"} */
#define HR_SEQ0_TAIL_LEN (sizeof(",\"seq\":0,\"epoch\":\"\"}") - 1 + SMSG_EPOCH_LEN)

/* What every EVALSHA of the publish script carries besides the message. */
typedef struct hr_conf {
  char sha[41];                       /* SHA1 of the publish script, hex */
  char nonce[SMSG_EPOCH_LEN + 1];     /* this process's epoch: seeds new channel epochs */
  char maxlen[24];                    /* MAXLEN ~ of each stream */
} hr_conf;

/* A published message's position as the script answered it. */
typedef struct hr_position {
  uint64_t seq;
  uint64_t epoch;
  char epoch_hex[SMSG_EPOCH_LEN + 1];
} hr_position;

void hr_conf_init(hr_conf *c, const char *nonce_hex, unsigned maxlen);
const char *hr_publish_script(void);
/* "tickerd:{<channel>}:pos" or ":hist" into out[HR_KEY_MAX]; its length. */
size_t hr_key(char *out, const char *channel, size_t n, bool stream);

/* The body the script appends the position to: the payload smsg_encode
 * made with seq 0, without its tail. 0 when it does not end that way. */
size_t hr_body_len(const char *payload, size_t n);
/* body + ,"seq":N,"epoch":"E"} as one new buffer (the script's payload). */
td_buf *hr_payload(const char *body, size_t n, const hr_position *pos);

/* The publish script's reply: 0 with *pos, HR_NOSCRIPT (the server lost
 * the script), or -EINVAL (anything else: an error or a bad shape; `err`
 * points into the reply or is a static string). */
#define HR_NOSCRIPT 1
int hr_publish_reply(const redisReply *r, hr_position *pos, const char **err);

/* The publisher's script commands in flight, oldest first: replies come in
 * order, and each needs its message back (the position goes to the cache,
 * a NOSCRIPT answer sends it again). One entry per command; the ring grows
 * by doubling and never shrinks (at most the pipeline's depth). */
typedef struct hr_sent {
  td_buf *msg;        /* channel, then body */
  uint32_t chn;
  uint32_t user;
  bool retried;
} hr_sent;

typedef struct hr_fifo {
  hr_sent *e;
  uint32_t cap, head, len;
} hr_fifo;

/* Room for one more: 0 or UV_ENOMEM. */
int hr_fifo_reserve(hr_fifo *f);
/* After hr_fifo_reserve. Takes the reference to `s->msg`. */
void hr_fifo_push(hr_fifo *f, const hr_sent *s);
/* false when empty. The caller owns the popped reference. */
bool hr_fifo_pop(hr_fifo *f, hr_sent *out);
void hr_fifo_free(hr_fifo *f);

/* ---- resume ---------------------------------------------------------------- */

typedef struct hr_entry {
  uint64_t seq;
  const char *payload;   /* valid during the callback only */
  size_t len;
} hr_entry;

/* What the read found: ok false when Redis could not answer (then nothing
 * else is set). A channel without a position hash has epoch 0 and top 0. */
typedef struct hr_read_result {
  bool ok;
  uint64_t epoch, top;
  size_t n;
  const hr_entry *e;     /* entries with seq > after, oldest first */
  hr_entry last;         /* the stream's newest entry; payload NULL when empty */
} hr_read_result;

typedef void (*hr_read_cb)(void *ud, const hr_read_result *r);
typedef struct hr_reader hr_reader;

hr_reader *hr_reader_new(uv_loop_t *loop, const char *redis_url);
/* Reads the entries of `channel` after seq `after` (at most HR_REPLAY_MAX).
 * cb runs exactly once, later, unless this returns < 0 (not connected). */
int hr_read(hr_reader *r, const char *channel, size_t n, uint64_t after, hr_read_cb cb, void *ud);
/* Pending reads are answered with ok false; done(ud) once it is freed. */
void hr_reader_close(hr_reader *r, void (*done)(void *), void *ud);

#endif
