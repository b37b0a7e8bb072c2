/* libFuzzer: the small parsers of operator and client input that have no
 * harness of their own. One byte picks the parser, the rest is its input:
 *   0  rconn_url_parse   REDIS_URL / --redis-url
 *   1  cfg_load_env      command-line options, NUL-separated
 *   2  cfg_load_env      environment (NAME=value), NUL-separated
 *   3  http_query_param  a query string, every parameter the handlers read
 *   4  uuid_parse        /tasks/{id}
 *   5  qstore_epoch_parse  Last-Event-ID's epoch
 *   6  task_state_parse  /tasks?state=
 *   7  sentinel_url_parse  REDIS_URL / --redis-url as redis+sentinel://
 *   8  wild_parse        a subscription's pattern ("*", "BRK.*")
 *   9  rcl_url_parse     --redis-url redis+cluster://
 * Each result is checked against what the parser promises. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app/config.h"
#include "app/task.h"
#include "base/uuid.h"
#include "http/http.h"
#include "market/quote_store.h"
#include "redis/cluster.h"
#include "redis/redis_conn.h"
#include "redis/sentinel.h"
#include "stream/hub_wild.h"

/* Options or variables one input may carry. */
#define FUZZ_MAX_ARGS 32

static void redis_url(const char *s) {
  rconn_url u;
  memset(&u, 0, sizeof(u));
  const char *err = NULL;
  if (rconn_url_parse(s, &u, &err) == 0) {
    if (u.is_unix ? !u.path || !*u.path : !u.host || !*u.host || u.port < 1 || u.port > 65535) abort();
    if (u.db < 0 || !u.masked) abort();
    /* The masked form, which is logged, is the URL with the password's span
     * (after the userinfo's first ':', up to its last '@') as "***". */
    if (!u.is_unix) {
      const char *auth = strstr(s, "://") + 3, *end = auth + strcspn(auth, "/"), *at = NULL;
      for (const char *p = auth; p < end; p++)
        if (*p == '@') at = p;
      const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
      if (u.password && !colon) abort();
      if (colon) {
        size_t pre = (size_t)(colon + 1 - s);
        if (strlen(u.masked) != strlen(s) - (size_t)(at - colon - 1) + 3 || memcmp(u.masked, s, pre) ||
            memcmp(u.masked + pre, "***", 3) || strcmp(u.masked + pre + 3, at))
          abort();
      } else if (strcmp(u.masked, s)) {
        abort();
      }
    }
  } else if (!err) {
    abort();
  }
  rconn_url_free(&u);
}

static bool master_char_ok(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("-_.", ch);
}

static void sentinel_url_case(const char *s) {
  sentinel_url u;
  const char *err = NULL;
  if (sentinel_url_parse(s, &u, &err) == 0) {
    if (!sentinel_url_is(s) || u.nhosts < 1 || u.nhosts > SENTINEL_HOSTS_MAX || !u.master || !u.primary.masked) abort();
    for (int i = 0; i < u.nhosts; i++)
      if (!u.hosts[i].host || !*u.hosts[i].host || u.hosts[i].port < 1 || u.hosts[i].port > 65535) abort();
    size_t n = strlen(u.master);
    if (n < 1 || n > SENTINEL_NAME_MAX) abort();
    for (size_t i = 0; i < n; i++)
      if (!master_char_ok(u.master[i])) abort();
    if (u.primary.db < 0 || u.primary.db > RCONN_DB_MAX) abort();
    /* The logged form hides the password whenever there is one. */
    if (u.primary.password && !strstr(u.primary.masked, ":***@")) abort();
    sentinel_url_free(&u);
  } else if (!err || u.nhosts || u.master || u.primary.password) {
    abort();
  }
}

/* Splits s at NULs into at most FUZZ_MAX_ARGS strings after `first`. */
static int split(char *s, size_t n, char **out, const char *first) {
  int k = 0;
  if (first) out[k++] = (char *)first;
  for (size_t i = 0; i < n && k < FUZZ_MAX_ARGS; k++) {
    out[k] = s + i;
    i += strlen(s + i) + 1;
  }
  out[k] = NULL;
  return k;
}

static void options(char *s, size_t n, bool env) {
  char *v[FUZZ_MAX_ARGS + 2];
  char *argv[] = {"tickerd", NULL};
  int k = split(s, n, v, env ? NULL : "tickerd");
  td_config cfg;
  int rc = env ? cfg_load_env(&cfg, 1, argv, v) : cfg_load_env(&cfg, k, v, NULL);
  if (rc == 0) {
    if (cfg.port < 0 || cfg.port > 65535 || !cfg.redis_url || !cfg.host) abort();
    if (cfg.client_soft_bytes > cfg.client_hard_bytes) abort();
  }
  cfg_free(&cfg);
}

static void query(const char *s, size_t n) {
  static const char *const names[] = {"symbols", "history", "limit", "state", "token", "last_event_id", ""};
  td_request req;
  memset(&req, 0, sizeof(req));
  req.query = s;
  req.query_len = n;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char out[64];
    memset(out, 'x', sizeof(out));
    if (http_query_param(&req, names[i], out, sizeof(out)) && !memchr(out, 0, sizeof(out))) abort();
    char tiny[1];
    if (http_query_param(&req, names[i], tiny, sizeof(tiny)) && tiny[0]) abort();
  }
}

/* Every seed a cluster URL yields is a redis:// URL its parser accepts
 * (rediss:// under rediss+cluster://). */
static void cluster_url(const char *s) {
  char *urls[RCL_SEEDS_MAX];
  size_t n = 0;
  const char *err = NULL;
  if (rcl_url_parse(s, urls, &n, &err) != 0) {
    if (!err) abort();
    return;
  }
  if (n < 1 || n > RCL_SEEDS_MAX || !rcl_is_url(s)) abort();
  for (size_t i = 0; i < n; i++) {
    rconn_url u;
    const char *scheme = rcl_is_tls(s) ? "rediss://" : "redis://";
    if (strncmp(urls[i], scheme, strlen(scheme)) || rconn_url_parse(urls[i], &u, &err) != 0 || u.is_unix || u.db ||
        u.tls != rcl_is_tls(s))
      abort();
    rconn_url_free(&u);
    free(urls[i]);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0] % 10;
  size--;
  char *s = malloc(size + 1);
  if (!s) abort();
  memcpy(s, data + 1, size);
  s[size] = '\0';
  switch (mode) {
    case 0: redis_url(s); break;
    case 1: options(s, size, false); break;
    case 2: options(s, size, true); break;
    case 3: query(s, size); break;
    case 4: {
      uint8_t id[16];
      char again[UUID_STR_LEN + 1];
      if (uuid_parse(s, size, id)) { /* canonical: it prints back as it came, up to case */
        uuid_format(id, again);
        if (size != UUID_STR_LEN || strncasecmp(again, s, size)) abort();
      }
      break;
    }
    case 5: {
      uint64_t e = 0;
      char again[SMSG_EPOCH_LEN + 1];
      if (qstore_epoch_parse(s, size, &e) == 0) {
        qstore_epoch_format(e, again);
        if (size != SMSG_EPOCH_LEN || memcmp(again, s, size)) abort();
      }
      break;
    }
    case 6: {
      int st = task_state_parse(s); /* a state's name, or negative */
      if (st >= 0 && strcmp(task_state_name((task_state)st), s)) abort();
      break;
    }
    case 7: sentinel_url_case(s); break;
    case 8: { /* a pattern is one '*', last, after a valid symbol's start */
      size_t plen = 0;
      int rc = wild_parse(s, size, &plen);
      const char *star = memchr(s, '*', size);
      if (rc == 0 && star) abort();
      if (rc == 1 && (plen != size - 1 || s[plen] != '*' || memchr(s, '*', plen) || plen >= TD_SYMBOL_MAX ||
                      (plen && !smsg_symbol_valid(s, plen))))
        abort();
      if (rc < 0 && (rc != -EINVAL || !star)) abort();
      break;
    }
    case 9: cluster_url(s); break;
  }
  free(s);
  return 0;
}
