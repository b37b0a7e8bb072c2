#include "base/uuid.h"
#include "base/hex.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

/* One getrandom(2) call serves 256 UUIDs. */
#define UUID_POOL_BYTES 4096

static uint8_t pool[UUID_POOL_BYTES];
static size_t pool_left;

int uuid_random_bytes(void *out, size_t n) {
  uint8_t *o = out;
  while (n > 0) {
    if (pool_left == 0) {
      ssize_t got = getrandom(pool, sizeof(pool), 0);
      if (got != (ssize_t)sizeof(pool)) return got < 0 ? -errno : -EIO;
      pool_left = sizeof(pool);
    }
    size_t take = n < pool_left ? n : pool_left;
    memcpy(o, pool + sizeof(pool) - pool_left, take);
    /* never hand the same bytes out twice */
    memset(pool + sizeof(pool) - pool_left, 0, take);
    pool_left -= take;
    o += take;
    n -= take;
  }
  return 0;
}

int uuid_v4(uint8_t out[16]) {
  int rc = uuid_random_bytes(out, 16);
  if (rc) return rc;
  out[6] = (uint8_t)((out[6] & 0x0f) | 0x40); /* version 4 */
  out[8] = (uint8_t)((out[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  return 0;
}

void uuid_format(const uint8_t id[16], char out[UUID_STR_LEN + 1]) {
  char *p = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
    *p++ = HEX_DIGITS[id[i] >> 4];
    *p++ = HEX_DIGITS[id[i] & 15];
  }
  *p = '\0';
}

bool uuid_parse(const char *s, size_t len, uint8_t out[16]) {
  if (len != UUID_STR_LEN) return false;
  int b = 0;
  for (size_t i = 0; i < len;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
      i++;
      continue;
    }
    int hi = hex_value(s[i]), lo = hex_value(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[b++] = (uint8_t)(hi << 4 | lo);
    i += 2;
  }
  return b == 16;
}
