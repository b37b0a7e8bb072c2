/* smsg_parse: the cost of stream_msg per quote, without sockets or Redis.
 *
 * Builds one POST /quotes body of SP_BATCH realistic Alpaca quotes (varied
 * symbols, exchanges, cent prices in Go's shortest form, sizes, nanosecond
 * times) and parses it N times with smsg_parse_batch (or smsg_parse_stream
 * with -s), encoding every delivered message with smsg_encode like the
 * pipeline does. Prints one line of key=value pairs:
 *
 *   mode=batch quotes=N best_ns_per_quote=.. quotes_per_s=.. bytes=..
 *
 * Wall time on a shared machine is noisy: for a stable figure run it under
 *   valgrind --tool=callgrind --toggle-collect=sp_run build/bench/smsg_parse -n 20
 * and divide the instructions by 20 * SP_BATCH. Usage: smsg_parse [-s] [-n N] [-r RUNS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "market/stream_msg.h"

/* Quotes per body: a large POST /quotes, as the pipeline benchmark sends. */
#define SP_BATCH 1000
/* An Alpaca quote is about 170 bytes; 256 leaves room. */
#define SP_QUOTE_MAX 256

static const char *const syms[] = {"AAPL", "MSFT", "BRK.B", "GOOGL", "AMZN", "NVDA", "TSLA",
                                   "META", "SPY", "QQQ", "AMD", "BTC/USD"};

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

/* Cents as Go prints a float64: 189.5, 189.52, 190. */
static int put_price(char *o, uint64_t cents) {
  if (cents % 100 == 0) return sprintf(o, "%llu", (unsigned long long)(cents / 100));
  if (cents % 10 == 0) return sprintf(o, "%llu.%llu", (unsigned long long)(cents / 100),
                                      (unsigned long long)(cents % 100 / 10));
  return sprintf(o, "%llu.%02llu", (unsigned long long)(cents / 100), (unsigned long long)(cents % 100));
}

static size_t make_body(char *out) {
  size_t n = 0;
  out[n++] = '[';
  for (int i = 0; i < SP_BATCH; i++) {
    char bp[32], ap[32];
    uint64_t bid = 1000 + next() % 50000, ask = bid + 1 + next() % 5;
    put_price(bp, bid);
    put_price(ap, ask);
    const char *ex = "VQPZKJ";
    if (i) out[n++] = ',';
    n += (size_t)sprintf(out + n,
                         "{\"T\":\"q\",\"S\":\"%s\",\"bx\":\"%c\",\"bp\":%s,\"bs\":%u,\"ax\":\"%c\","
                         "\"ap\":%s,\"as\":%u,\"c\":[\"R\"],\"z\":\"%c\","
                         "\"t\":\"2026-11-21T20:00:%02d.%09uZ\"}",
                         syms[next() % (sizeof(syms) / sizeof(syms[0]))], ex[next() % 6], bp,
                         (unsigned)(1 + next() % 20), ex[next() % 6], ap, (unsigned)(1 + next() % 20),
                         "ABC"[next() % 3], i % 60, (unsigned)(next() % 1000000000));
  }
  out[n++] = ']';
  return n;
}

static void on_msg(void *ud, const smsg_msg *m) {
  uint64_t *seq = ud;
  td_buf *b = smsg_encode(m, ++*seq, "9f3a0c1d2e4b5a69");
  if (!b) abort();
  buf_unref(b);
}

/* The measured loop (callgrind --toggle-collect=sp_run). */
__attribute__((noinline)) uint64_t sp_run(const char *body, size_t len, int n, int stream);
__attribute__((noinline)) uint64_t sp_run(const char *body, size_t len, int n, int stream) {
  uint64_t seq = 0;
  char err[SMSG_ERR_MAX];
  smsg_stats st = {0};
  for (int i = 0; i < n; i++) {
    int rc = stream ? smsg_parse_stream(body, len, on_msg, NULL, &seq, &st)
                    : smsg_parse_batch(body, len, on_msg, &seq, err);
    if (rc != SP_BATCH) {
      fprintf(stderr, "parse failed: %d %s\n", rc, stream ? "" : err);
      exit(1);
    }
  }
  return seq;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  int n = 200, runs = 5, stream = 0, c;
  while ((c = getopt(argc, argv, "sn:r:")) != -1) {
    if (c == 's') stream = 1;
    else if (c == 'n') n = atoi(optarg);
    else if (c == 'r') runs = atoi(optarg);
    else return 1;
  }
  char *body = malloc((size_t)SP_BATCH * SP_QUOTE_MAX);
  size_t len = make_body(body);
  double best = 1e30;
  for (int r = 0; r < runs; r++) {
    double t0 = now_s();
    sp_run(body, len, n, stream);
    double dt = now_s() - t0;
    if (dt < best) best = dt;
  }
  double per = best / ((double)n * SP_BATCH);
  printf("mode=%s quotes=%d best_ns_per_quote=%.1f quotes_per_s=%.0f bytes=%zu\n",
         stream ? "stream" : "batch", n * SP_BATCH, per * 1e9, 1 / per, len);
  free(body);
  return 0;
}
