/* libFuzzer: the URL parser that every upstream connection (wss://, https://)
 * goes through. An accepted URL must yield a host without separators or
 * controls, a port in range, a path that starts with '/' and holds nothing
 * that could break a request line, and must parse again to the same parts
 * when rebuilt from them. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/https_client.h"

static void check(const hcli_url *u) {
  size_t hl = strlen(u->host);
  if (hl == 0 || hl > TLS_MAX_HOST) abort();
  if (strpbrk(u->host, "/?#@ \r\n")) abort();
  if (u->port < 1 || u->port > 65535) abort();
  if (u->path[0] != '/') abort();
  for (const char *p = u->path; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '#') abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s) return 0;
  memcpy(s, data, size);
  s[size] = 0;
  hcli_url u;
  if (hcli_url_parse(s, &u) == 0) {
    check(&u);
    static char again[HCLI_MAX_PATH + TLS_MAX_HOST + 64];
    const char *scheme = u.websocket ? (u.tls ? "wss" : "ws") : (u.tls ? "https" : "http");
    bool v6 = strchr(u.host, ':') != NULL;
    snprintf(again, sizeof(again), "%s://%s%s%s:%d%s", scheme, v6 ? "[" : "", u.host, v6 ? "]" : "",
             u.port, u.path);
    hcli_url v;
    if (hcli_url_parse(again, &v) != 0) abort();
    if (strcmp(u.host, v.host) || u.port != v.port || strcmp(u.path, v.path) || u.tls != v.tls ||
        u.websocket != v.websocket || strcmp(u.authority, v.authority))
      abort();
  }
  free(s);
  return 0;
}
