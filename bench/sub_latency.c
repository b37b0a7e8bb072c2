/* sub_latency: end-to-end latency of the quote pipeline, seen by a Redis
 * subscriber.
 *
 * PSUBSCRIBEs to a pattern (quotes:* by default) and, for each message,
 * reads the payload's "t" field (RFC 3339 with up to nanoseconds, set by
 * tickerd's sim feed when it generates the quote, from CLOCK_REALTIME) and
 * records now - t. After -n messages or -T seconds it prints one line of
 * key=value pairs in microseconds:
 *
 *   count=N bad=B min_us=.. p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=.. seconds=..
 *
 * Sync hiredis is enough: one connection, and poll() bounds every wait so
 * the time limit holds even when no message comes. Exit status: 0 when at
 * least one message was measured, 1 on a usage or connection error, 2 when
 * none arrived. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Samples kept at most: 8 MB of int64, minutes of a 10k/s feed. */
#define SL_MAX_SAMPLES 1000000
/* Longest single wait for the socket, so that signals and -T are honoured. */
#define SL_POLL_MS 100
#define SL_CONNECT_TIMEOUT_S 2

typedef struct {
  const char *host;
  int port;
  const char *pattern;
  long max_messages;
  double max_seconds;
} sl_options;

typedef struct {
  int64_t *ns;   /* latencies, nanoseconds */
  long count;
  long bad;      /* messages without a parsable "t" */
} sl_samples;

static volatile sig_atomic_t sl_stop;

static void sl_on_signal(int sig) {
  (void)sig;
  sl_stop = 1;
}

static int64_t sl_now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Parses "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)" into nanoseconds
 * since the epoch. Returns 0, or -1 when the text is not such a timestamp. */
static int sl_parse_rfc3339(const char *s, int64_t *out) {
  struct tm tm;
  int n = 0;
  memset(&tm, 0, sizeof(tm));
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
             &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 19)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const char *p = s + n;
  int64_t frac = 0;
  if (*p == '.') {
    int digits = 0;
    for (p++; *p >= '0' && *p <= '9'; p++, digits++)
      if (digits < 9) frac = frac * 10 + (*p - '0');
    if (digits == 0) return -1;
    for (; digits < 9; digits++) frac *= 10;
  }
  int64_t offset_s = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int oh, om, m = 0;
    if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &m) != 2 || m != 5) return -1;
    offset_s = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
    p += 6;
  } else {
    return -1;
  }
  if (*p != '"' && *p != '\0') return -1;
  time_t secs = timegm(&tm);
  if (secs == (time_t)-1) return -1;
  *out = ((int64_t)secs - offset_s) * 1000000000 + frac;
  return 0;
}

/* Finds the string value of "t" in a compact JSON object. */
static int sl_payload_time(const char *payload, size_t len, int64_t *out) {
  static const char key[] = "\"t\":\"";
  const char *p = memmem(payload, len, key, sizeof(key) - 1);
  if (!p) return -1;
  p += sizeof(key) - 1;
  if (!memchr(p, '"', len - (size_t)(p - payload))) return -1;
  return sl_parse_rfc3339(p, out);
}

/* A pmessage reply is ["pmessage", pattern, channel, payload]. */
static void sl_record(sl_samples *s, const redisReply *r, int64_t now_ns) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 || r->element[3]->type != REDIS_REPLY_STRING ||
      strcmp(r->element[0]->str, "pmessage") != 0)
    return;
  int64_t t;
  if (sl_payload_time(r->element[3]->str, r->element[3]->len, &t) != 0) {
    s->bad++;
    return;
  }
  if (s->count < SL_MAX_SAMPLES) s->ns[s->count++] = now_ns - t;
}

static int sl_cmp(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples, in microseconds. */
static double sl_pct_us(const sl_samples *s, double pct) {
  long rank = (long)((pct / 100.0) * (double)s->count + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > s->count) rank = s->count;
  return (double)s->ns[rank - 1] / 1000.0;
}

static void sl_usage(void) {
  fprintf(stderr,
          "usage: sub_latency [-h host] [-p port] [-P pattern] [-n messages] [-T seconds]\n"
          "  defaults: -h 127.0.0.1 -p 6379 -P 'quotes:*' -n %d -T 10\n",
          SL_MAX_SAMPLES);
}

static int sl_parse_args(int argc, char **argv, sl_options *o) {
  int c;
  while ((c = getopt(argc, argv, "h:p:P:n:T:")) != -1) {
    switch (c) {
      case 'h': o->host = optarg; break;
      case 'p': o->port = atoi(optarg); break;
      case 'P': o->pattern = optarg; break;
      case 'n': o->max_messages = atol(optarg); break;
      case 'T': o->max_seconds = atof(optarg); break;
      default: return -1;
    }
  }
  if (o->port <= 0 || o->port > 65535 || o->max_messages <= 0 || o->max_seconds <= 0 || optind != argc)
    return -1;
  if (o->max_messages > SL_MAX_SAMPLES) o->max_messages = SL_MAX_SAMPLES;
  return 0;
}

/* Reads messages until a limit is reached. Returns 0, or -1 on a connection error. */
static int sl_collect(redisContext *c, const sl_options *o, sl_samples *s) {
  int64_t deadline = sl_now_ns(CLOCK_MONOTONIC) + (int64_t)(o->max_seconds * 1e9);
  while (!sl_stop && s->count < o->max_messages) {
    void *reply = NULL;
    if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) return -1;
    if (reply) {
      sl_record(s, reply, sl_now_ns(CLOCK_REALTIME));
      freeReplyObject(reply);
      continue;
    }
    int64_t left_ms = (deadline - sl_now_ns(CLOCK_MONOTONIC)) / 1000000;
    if (left_ms <= 0) break;
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int rc = poll(&pfd, 1, left_ms < SL_POLL_MS ? (int)left_ms : SL_POLL_MS);
    if (rc < 0 && errno != EINTR) return -1;
    if (rc > 0 && redisBufferRead(c) != REDIS_OK) return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  sl_options o = {"127.0.0.1", 6379, "quotes:*", SL_MAX_SAMPLES, 10.0};
  if (sl_parse_args(argc, argv, &o) != 0) {
    sl_usage();
    return 1;
  }
  signal(SIGINT, sl_on_signal);
  signal(SIGTERM, sl_on_signal);
  signal(SIGPIPE, SIG_IGN);

  struct timeval tv = {SL_CONNECT_TIMEOUT_S, 0};
  redisContext *c = redisConnectWithTimeout(o.host, o.port, tv);
  if (!c || c->err) {
    fprintf(stderr, "sub_latency: connect %s:%d: %s\n", o.host, o.port, c ? c->errstr : "out of memory");
    redisFree(c);
    return 1;
  }
  redisReply *r = redisCommand(c, "PSUBSCRIBE %s", o.pattern);
  if (!r || r->type == REDIS_REPLY_ERROR) {
    fprintf(stderr, "sub_latency: PSUBSCRIBE failed: %s\n", r ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
    return 1;
  }
  freeReplyObject(r);

  sl_samples s = {calloc((size_t)o.max_messages, sizeof(int64_t)), 0, 0};
  if (!s.ns) {
    redisFree(c);
    return 1;
  }
  int64_t start = sl_now_ns(CLOCK_MONOTONIC);
  int rc = sl_collect(c, &o, &s);
  double seconds = (double)(sl_now_ns(CLOCK_MONOTONIC) - start) / 1e9;
  if (rc != 0) fprintf(stderr, "sub_latency: connection lost: %s\n", c->errstr);
  redisFree(c);

  if (s.count == 0) {
    printf("count=0 bad=%ld seconds=%.3f\n", s.bad, seconds);
    free(s.ns);
    return 2;
  }
  qsort(s.ns, (size_t)s.count, sizeof(int64_t), sl_cmp);
  printf("count=%ld bad=%ld min_us=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f seconds=%.3f\n",
         s.count, s.bad, (double)s.ns[0] / 1000.0, sl_pct_us(&s, 50), sl_pct_us(&s, 90), sl_pct_us(&s, 99),
         sl_pct_us(&s, 99.9), (double)s.ns[s.count - 1] / 1000.0, seconds);
  free(s.ns);
  return 0;
}
