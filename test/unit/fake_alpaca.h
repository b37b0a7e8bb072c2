/* Test support for the upstream client tests: a throwaway CA made by
 * test/support/testca.sh, the fake Alpaca server (test/support/fake_alpaca.py)
 * run as a subprocess on kernel-chosen ports, and a loop runner bounded by
 * a deadline so that a bug fails a test instead of hanging it.
 *
 * Paths are relative to the repository root (where `make test-unit` runs);
 * TD_SRC_DIR overrides it. */
#ifndef TD_TEST_FAKE_ALPACA_H
#define TD_TEST_FAKE_ALPACA_H

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "app/config.h"

/* The clients take alpaca_opts; the tests configure through cfg_load like
 * tickerd does and convert, as main.c does. */
static inline const alpaca_opts *alpaca_opts_of(const td_config *cfg) {
  static alpaca_opts o;
  cfg_alpaca_opts(cfg, &o);
  return &o;
}
#include <unistd.h>
#include <uv.h>

/* A whole test binary is killed (SIGALRM) past this: the last line of
 * defence should a loop never become quiescent. */
#define FAKE_PROCESS_DEADLINE_S 120
/* How long the fake server may take to print READY. */
#define FAKE_READY_MS 10000

static char fake_dir[256];

static inline void fake_cleanup(void) {
  if (!fake_dir[0]) return;
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fake_dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", fake_dir);
  fake_dir[0] = 0;
}

static inline const char *fake_src_dir(void) {
  const char *d = getenv("TD_SRC_DIR");
  return d && *d ? d : ".";
}

/* The directory holding ca.pem, server.pem/key, wrong.pem/key (made once). */
static inline const char *fake_ca_dir(void) {
  if (fake_dir[0]) return fake_dir;
  snprintf(fake_dir, sizeof(fake_dir), "/tmp/td-alpaca-test-XXXXXX");
  if (!mkdtemp(fake_dir)) {
    perror("mkdtemp");
    exit(1);
  }
  atexit(fake_cleanup);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "%s/test/support/testca.sh '%s'", fake_src_dir(), fake_dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "testca.sh failed\n");
    exit(1);
  }
  return fake_dir;
}

static inline const char *fake_path(const char *file) {
  static char p[4][400];
  static int i;
  i = (i + 1) % 4;
  snprintf(p[i], sizeof(p[i]), "%s/%s", fake_ca_dir(), file);
  return p[i];
}

typedef struct {
  pid_t pid;
  int ws_port;
  int rest_port;
  int lifeline; /* the fake's stdin: when we exit, however, it sees EOF and exits */
} fake_server;

/* Starts the fake with TLS (cert "server" or "wrong", NULL: plain) and the
 * extra flags (NULL-terminated). Returns 0 or -1. */
static inline int fake_start(fake_server *f, const char *cert, const char *const *extra) {
  const char *argv[40];
  int n = 0;
  char script[400];
  snprintf(script, sizeof(script), "%s/test/support/fake_alpaca.py", fake_src_dir());
  argv[n++] = "/usr/bin/python3";
  argv[n++] = script;
  argv[n++] = "--exit-on-stdin-eof";
  char certp[300], keyp[300];
  if (cert) {
    snprintf(certp, sizeof(certp), "%s/%s.pem", fake_ca_dir(), cert);
    snprintf(keyp, sizeof(keyp), "%s/%s.key", fake_ca_dir(), cert);
    argv[n++] = "--cert";
    argv[n++] = certp;
    argv[n++] = "--key";
    argv[n++] = keyp;
  }
  for (int i = 0; extra && extra[i] && n < 38; i++) argv[n++] = extra[i];
  argv[n] = NULL;
  int fds[2], life[2];
  if (pipe(fds) < 0) return -1;
  if (pipe2(life, O_CLOEXEC) < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  char logp[400];
  snprintf(logp, sizeof(logp), "%s/fake.log", fake_ca_dir());
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    close(life[0]);
    close(life[1]);
    return -1;
  }
  if (pid == 0) {
    dup2(life[0], 0);
    dup2(fds[1], 1);
    int lf = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (lf >= 0) dup2(lf, 2);
    close(fds[0]);
    close(fds[1]);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(fds[1]);
  close(life[0]);
  f->lifeline = life[1];
  char line[128];
  size_t have = 0;
  int rc = -1;
  struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
  while (have < sizeof(line) - 1 && poll(&pfd, 1, FAKE_READY_MS) == 1) {
    ssize_t r = read(fds[0], line + have, sizeof(line) - 1 - have);
    if (r <= 0) break;
    have += (size_t)r;
    line[have] = 0;
    if (strchr(line, '\n')) {
      if (sscanf(line, "READY %d %d", &f->ws_port, &f->rest_port) == 2) rc = 0;
      break;
    }
  }
  close(fds[0]);
  f->pid = pid;
  if (rc < 0) {
    fprintf(stderr, "fake server did not start (see %s)\n", logp);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(f->lifeline);
    f->pid = 0;
  }
  return rc;
}

static inline void fake_stop(fake_server *f) {
  if (f->pid <= 0) return;
  kill(f->pid, SIGTERM);
  waitpid(f->pid, NULL, 0);
  close(f->lifeline);
  f->pid = 0;
}

/* ---- a bounded loop ------------------------------------------------------- */

static inline void fake_on_guard(uv_timer_t *t) {
  *(bool *)t->data = true;
  uv_stop(t->loop);
}

/* Runs the loop until *done or ms elapsed. Returns *done. */
static inline bool run_until(uv_loop_t *loop, const bool *done, int ms) {
  bool timed_out = false;
  uv_timer_t guard;
  uv_timer_init(loop, &guard);
  guard.data = &timed_out;
  uv_timer_start(&guard, fake_on_guard, (uint64_t)ms, 0);
  while (!*done && !timed_out) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *done;
}

/* Runs the loop to quiescence: every handle must have been closed. */
static inline void run_to_end(uv_loop_t *loop) {
  uv_run(loop, UV_RUN_DEFAULT);
}

static inline void fake_process_setup(void) {
  signal(SIGPIPE, SIG_IGN);
  alarm(FAKE_PROCESS_DEADLINE_S);
  fake_ca_dir();
}

#endif
