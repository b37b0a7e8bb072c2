/* deflate_cost: what one permessage-deflate compression costs, for the
 * choice of zlib settings in src/http/ws_deflate.c (README "Compression").
 *
 * Two messages as tickerd sends them: one quote frame (~280 bytes) and a
 * 100-quote history message (~16 KB). For zlib levels 1 and 6 and memLevels
 * 4 and 8: ns per message for reset + compress (the per-message work
 * without context takeover) and the compressed size; then the real path,
 * wsd_pick on a fresh variant. Single-threaded, CPU time (not wall). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "base/buf.h"
#include "http/ws_deflate.h"
#include "http/ws_frame.h"

#define DC_ITERS_SMALL 200000
#define DC_ITERS_LARGE 5000

static double dc_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int dc_quote(char *out, size_t cap, int i) {
  return snprintf(out, cap,
                  "{\"type\":\"quote\",\"channel\":\"quotes:AAPL\",\"symbol\":\"AAPL\",\"id\":\"AAPL:9f3a0c1d2e4b5a69:%d\","
                  "\"data\":{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bp\":%d.%02d,\"bs\":3,\"ax\":\"V\",\"ap\":%d.%02d,"
                  "\"as\":1,\"c\":[\"R\"],\"z\":\"C\",\"t\":\"2026-11-21T20:00:%02d.%09dZ\",\"seq\":%d,"
                  "\"epoch\":\"9f3a0c1d2e4b5a69\"}}",
                  1000 + i, 180 + i % 7, i % 100, 180 + i % 7, (i * 7) % 100, i % 60, i * 7919 % 1000000000, 1000 + i);
}

static void dc_zlib(const char *name, const char *msg, size_t len, int iters, int level, int mem) {
  z_stream zs = {0};
  static unsigned char out[1 << 18];
  deflateInit2(&zs, level, Z_DEFLATED, -15, mem, Z_DEFAULT_STRATEGY);
  size_t zlen = 0;
  double t0 = dc_cpu_ns();
  for (int i = 0; i < iters; i++) {
    deflateReset(&zs);
    zs.next_in = (Bytef *)msg;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = sizeof(out);
    deflate(&zs, Z_SYNC_FLUSH);
    zlen = sizeof(out) - zs.avail_out - 4;
  }
  double ns = (dc_cpu_ns() - t0) / iters;
  deflateEnd(&zs);
  printf("| %s | zlib level %d, memLevel %d | %zu | %zu | %.0f %% | %.0f |\n", name, level, mem, len, zlen,
         100.0 * (double)zlen / (double)len, ns);
}

static void dc_pick(const char *name, const char *msg, size_t len, int iters) {
  size_t zlen = 0, plen = 0;
  double t0 = dc_cpu_ns();
  for (int i = 0; i < iters; i++) {
    wsd_variant v = wsd_variant_of(ws_frame_encode(WS_OP_TEXT, msg, len));
    td_buf *z = wsd_pick(&v, WSD_MAX_WINDOW_BITS);
    zlen = z->len;
    plen = v.plain->len;
    wsd_variant_done(&v);
  }
  double ns = (dc_cpu_ns() - t0) / iters;
  printf("| %s | tickerd: encode + wsd_pick (frames) | %zu | %zu | %.0f %% | %.0f |\n", name, plen, zlen,
         100.0 * (double)zlen / (double)plen, ns);
}

int main(void) {
  char quote[512], *hist = malloc(1 << 16);
  size_t qlen = (size_t)dc_quote(quote, sizeof quote, 1), hlen = 0;
  hlen += (size_t)sprintf(hist, "{\"type\":\"history\",\"symbol\":\"AAPL\",\"quotes\":[");
  for (int i = 0; i < 100; i++) {
    char q[512];
    dc_quote(q, sizeof q, i);
    char *data = strstr(q, "\"data\":") + 7;
    size_t n = strlen(data) - 1;
    if (i) hist[hlen++] = ',';
    memcpy(hist + hlen, data, n);
    hlen += n;
  }
  hlen += (size_t)sprintf(hist + hlen, "]}");
  printf("| message | compressor | bytes | compressed | ratio | CPU ns per message |\n|---|---|---:|---:|---:|---:|\n");
  static const int levels[] = {1, 6}, mems[] = {4, 8};
  for (int l = 0; l < 2; l++)
    for (int m = 0; m < 2; m++) {
      dc_zlib("quote", quote, qlen, DC_ITERS_SMALL, levels[l], mems[m]);
      dc_zlib("history (100 quotes)", hist, hlen, DC_ITERS_LARGE, levels[l], mems[m]);
    }
  dc_pick("quote", quote, qlen, DC_ITERS_SMALL);
  dc_pick("history (100 quotes)", hist, hlen, DC_ITERS_LARGE);
  wsd_release();
  buf_pool_release();
  free(hist);
  return 0;
}
