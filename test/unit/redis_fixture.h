/* A real redis-server for unit tests: started on a free port with no
 * persistence, stopped (SIGKILL) at the end; it can be killed, restarted on
 * the same port, and paused with SIGSTOP. Also: run a libuv loop until a
 * condition holds or a deadline passes, so a bug fails instead of hanging. */
#ifndef TD_REDIS_FIXTURE_H
#define TD_REDIS_FIXTURE_H

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define RFX_MAX_ARGS 24
#define RFX_START_TIMEOUT_MS 5000

typedef struct rfx {
  pid_t pid;
  int port;
  char unixsock[108];
  const char *extra[RFX_MAX_ARGS]; /* extra "--flag", "value" pairs */
  int nextra;
} rfx;

static inline int rfx_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

static inline void rfx_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* A blocking client for checks; NULL if the server does not answer. */
static inline redisContext *rfx_client(const rfx *r) {
  struct timeval tv = {1, 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
  if (c && c->err) {
    redisFree(c);
    return NULL;
  }
  return c;
}

static inline bool rfx_ping(const rfx *r, const char *password) {
  redisContext *c = rfx_client(r);
  if (!c) return false;
  redisReply *rep = password ? redisCommand(c, "AUTH %s", password) : redisCommand(c, "PING");
  bool ok = rep && rep->type != REDIS_REPLY_ERROR;
  if (rep) freeReplyObject(rep);
  redisFree(c);
  return ok;
}

/* Every server started, killed at exit even when a test fails midway (a
 * SIGSTOPped orphan would otherwise hold the test's output pipe open). */
#define RFX_MAX_SERVERS 16
static pid_t rfx_pids[RFX_MAX_SERVERS];

static inline void rfx_kill_all(void) {
  for (int i = 0; i < RFX_MAX_SERVERS; i++)
    if (rfx_pids[i] > 0) {
      kill(rfx_pids[i], SIGCONT);
      kill(rfx_pids[i], SIGKILL);
      waitpid(rfx_pids[i], NULL, 0);
      rfx_pids[i] = 0;
    }
}

static inline void rfx_track(pid_t pid, bool add) {
  static bool registered;
  if (!registered) registered = atexit(rfx_kill_all) == 0;
  for (int i = 0; i < RFX_MAX_SERVERS; i++)
    if (add ? rfx_pids[i] == 0 : rfx_pids[i] == pid) {
      rfx_pids[i] = add ? pid : 0;
      return;
    }
}

/* Starts the server on r->port (0: pick a free one). 0 or -1. */
static inline int rfx_spawn(rfx *r, const char *password) {
  if (r->port == 0) r->port = rfx_free_port();
  char port[16];
  snprintf(port, sizeof(port), "%d", r->port);
  const char *argv[RFX_MAX_ARGS + 16];
  int n = 0;
  argv[n++] = "redis-server";
  argv[n++] = "--port"; argv[n++] = port;
  argv[n++] = "--bind"; argv[n++] = "127.0.0.1";
  argv[n++] = "--save"; argv[n++] = "";
  argv[n++] = "--appendonly"; argv[n++] = "no";
  argv[n++] = "--loglevel"; argv[n++] = "warning";
  if (r->unixsock[0]) {
    argv[n++] = "--unixsocket"; argv[n++] = r->unixsock;
  }
  for (int i = 0; i < r->nextra; i++) argv[n++] = r->extra[i];
  argv[n] = NULL;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    /* Dies with the test even when it aborts (a sanitizer report skips atexit). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(126);
    execvp("redis-server", (char *const *)argv);
    _exit(127);
  }
  r->pid = pid;
  rfx_track(pid, true);
  for (int waited = 0; waited < RFX_START_TIMEOUT_MS; waited += 10) {
    if (rfx_ping(r, password)) return 0;
    if (waitpid(pid, NULL, WNOHANG) == pid) break;
    rfx_sleep_ms(10);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  rfx_track(pid, false);
  r->pid = 0;
  return -1;
}

static inline void rfx_arg(rfx *r, const char *flag, const char *value) {
  r->extra[r->nextra++] = flag;
  if (value) r->extra[r->nextra++] = value;
}

static inline void rfx_kill(rfx *r) {
  if (r->pid <= 0) return;
  kill(r->pid, SIGCONT);
  kill(r->pid, SIGKILL);
  waitpid(r->pid, NULL, 0);
  rfx_track(r->pid, false);
  r->pid = 0;
}

static inline void rfx_signal(rfx *r, int sig) {
  if (r->pid > 0) kill(r->pid, sig);
}

static inline char *rfx_url(const rfx *r, char *buf, size_t n, const char *userinfo, int db) {
  snprintf(buf, n, "redis://%s%s127.0.0.1:%d/%d", userinfo ? userinfo : "", userinfo ? "@" : "",
           r->port, db);
  return buf;
}

/* ---- loop helpers -------------------------------------------------------- */

typedef bool (*rfx_cond)(void *arg);

static inline void rfx_tick(uv_timer_t *t) { (void)t; }

/* Runs `loop` until cond(arg) or timeout_ms; returns cond(arg). A ticking
 * timer makes each UV_RUN_ONCE return so the condition is re-checked. */
static inline bool rfx_run_until(uv_loop_t *loop, rfx_cond cond, void *arg, int timeout_ms) {
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, rfx_tick, 5, 5);
  uint64_t end = uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
  bool ok;
  while (!(ok = cond(arg)) && uv_hrtime() < end) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

static inline bool rfx_never(void *arg) { (void)arg; return false; }

/* Runs the loop for ms milliseconds. */
static inline void rfx_run_for(uv_loop_t *loop, int ms) { rfx_run_until(loop, rfx_never, NULL, ms); }

/* Runs the loop until nothing is left (every handle closed): at most 2 s. */
static inline bool rfx_drain(uv_loop_t *loop) {
  for (int i = 0; i < 400; i++) {
    if (uv_run(loop, UV_RUN_NOWAIT) == 0 && !uv_loop_alive(loop)) return true;
    rfx_sleep_ms(5);
  }
  return false;
}

static inline void rfx_walk_print(uv_handle_t *h, void *arg) {
  (void)arg;
  fprintf(stderr, "open handle: %s%s\n", uv_handle_type_name(h->type),
          uv_is_closing(h) ? " (closing)" : "");
}

/* Drains and closes the loop; false (and prints) when handles leaked. */
static inline bool rfx_loop_close(uv_loop_t *loop) {
  rfx_drain(loop);
  if (uv_loop_close(loop) == 0) return true;
  uv_walk(loop, rfx_walk_print, NULL);
  return false;
}

static inline long long rfx_int_command(const rfx *r, const char *fmt, ...) {
  redisContext *c = rfx_client(r);
  if (!c) return -1;
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(c, fmt, ap);
  va_end(ap);
  long long v = -1;
  if (rep && rep->type == REDIS_REPLY_INTEGER) v = rep->integer;
  if (rep) freeReplyObject(rep);
  redisFree(c);
  return v;
}

#endif
