/* tickerd entry point: load the configuration, bring the modules up on one
 * libuv loop, run it, and shut down gracefully on SIGINT/SIGTERM. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "config.h"
#include "log.h"
#include "server.h"
#include "task.h"
#include "version.h"
#include "web.h"

typedef struct {
  td_app app;
  uv_signal_t sigint, sigterm;
  int exit_code;
} td_main;

/* build/web next to the binary, so `make run` needs no flag. */
static void default_web_root(char *out, size_t size) {
  char exe[PATH_MAX - 16]; /* room for "/web" in out */
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) {
    snprintf(out, size, "build/web");
    return;
  }
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (slash) *slash = '\0';
  snprintf(out, size, "%s/web", exe);
}

static void on_drained(void *data) {
  td_main *m = data;
  log_msg(TD_LOG_INFO, "server_stopped", "all connections closed");
  uv_close((uv_handle_t *)&m->sigint, NULL);
  uv_close((uv_handle_t *)&m->sigterm, NULL);
  tasks_close(m->app.tasks);
  log_close();
}

static void on_signal(uv_signal_t *h, int signum) {
  td_main *m = h->data;
  td_app *app = &m->app;
  if (app->shutting_down) {
    /* a second signal: stop waiting for the grace period */
    log_msg(TD_LOG_WARN, "shutdown_forced", "second signal");
    log_flush();
    _exit(1);
  }
  app->shutting_down = true;
  td_logline *l = log_begin(TD_LOG_INFO, "server_stopping");
  if (l) {
    log_str(l, "signal", signum == SIGINT ? "SIGINT" : "SIGTERM");
    log_int(l, "grace_ms", app->cfg->shutdown_grace_ms);
    log_end(l);
  }
  tasks_cancel_all(app->tasks, "server shutting down");
  server_shutdown(app->server, app->cfg->shutdown_grace_ms, on_drained, m);
}

static int start(td_main *m) {
  td_app *app = &m->app;
  td_config *cfg = app->cfg;
  app->tasks = tasks_new(app->loop, cfg);
  if (!app->tasks) return -1;
  int rc = server_start(&app->server, app);
  if (rc != 0) {
    fprintf(stderr, "tickerd: cannot listen on %s:%d: %s\n", cfg->host, cfg->port, uv_strerror(rc));
    td_logline *l = log_begin(TD_LOG_ERROR, "listen_failed");
    if (l) { log_str(l, "host", cfg->host); log_int(l, "port", cfg->port); log_str(l, "error", uv_strerror(rc)); log_end(l); }
    return -1;
  }
  uv_signal_init(app->loop, &m->sigint);
  uv_signal_init(app->loop, &m->sigterm);
  m->sigint.data = m->sigterm.data = m;
  uv_signal_start(&m->sigint, on_signal, SIGINT);
  uv_signal_start(&m->sigterm, on_signal, SIGTERM);
  td_logline *l = log_begin(TD_LOG_INFO, "server_started");
  if (l) {
    log_str(l, "version", TD_VERSION);
    log_str(l, "host", cfg->host);
    log_int(l, "port", server_port(app->server));
    log_str(l, "feed", cfg_feed_name(cfg->feed));
    log_int(l, "pid", getpid());
    log_end(l);
  }
  char web_root[PATH_MAX];
  if (cfg->web_root) snprintf(web_root, sizeof(web_root), "%s", cfg->web_root);
  else default_web_root(web_root, sizeof(web_root));
  if (web_load(web_root) <= 0) {
    l = log_begin(TD_LOG_WARN, "dashboard_unavailable");
    if (l) { log_str(l, "web_root", web_root); log_str(l, "message", "no dashboard assets; /dashboard answers 404"); log_end(l); }
  }
  log_flush();
  return 0;
}

int main(int argc, char **argv) {
  /* hiredis and our sockets write with write(2): a vanished peer must be an
   * EPIPE, not a signal that kills the process */
  signal(SIGPIPE, SIG_IGN);
  static td_config cfg;
  int rc = cfg_load(&cfg, argc, argv);
  if (rc != 0) {
    cfg_free(&cfg);
    return rc > 0 ? 0 : 2;
  }
  if (log_open(cfg.log_file, cfg.log_level) != 0) {
    fprintf(stderr, "tickerd: cannot open log file '%s'\n", cfg.log_file);
    cfg_free(&cfg);
    return 2;
  }
  static td_main m;
  m.app.loop = uv_default_loop();
  m.app.cfg = &cfg;
  m.app.start_ms = uv_now(m.app.loop);
  log_attach(m.app.loop);
  if (start(&m) != 0) {
    log_close();
    cfg_free(&cfg);
    return 1;
  }
  uv_run(m.app.loop, UV_RUN_DEFAULT);
  /* every handle is closed: free what they belonged to */
  if (m.app.server) server_free(m.app.server);
  if (m.app.tasks) tasks_free(m.app.tasks);
  web_free();
  uv_loop_close(m.app.loop);
  cfg_free(&cfg);
  return m.exit_code;
}
