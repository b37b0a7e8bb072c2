/* JSON-lines logger. The loop is single-threaded, so one line is built at a
 * time directly into the shared output buffer; nothing is allocated per line.
 * Both sinks get the same bytes; the file is opened in append mode. */
#include "base/log.h"
#include "base/jsonw.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_BUF_CAP (TD_LOG_BUF_FLUSH + 64 * 1024)
/* A value longer than this is cut, so one line always fits the buffer. */
#define LOG_VALUE_MAX 1024

struct td_logline {
  int unused;
};

static struct {
  char buf[LOG_BUF_CAP];
  size_t len;
  size_t line_start;
  int file_fd;
  bool to_stdout;
  td_log_level min_level;
  uint64_t lines[TD_LOG_ERROR + 1];
  uv_timer_t timer;
  bool timer_on;
  td_logline line;
} L = {.file_fd = -1, .to_stdout = true, .min_level = TD_LOG_INFO};

static const char *level_names[] = {"debug", "info", "warn", "error"};

/* The log file's path, for log_reopen (NULL: stdout only). */
static char *file_path;

static int open_append(const char *path) {
  return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
}

int log_open(const char *path, const char *level) {
  for (int i = 0; i <= TD_LOG_ERROR; i++)
    if (level && !strcmp(level, level_names[i])) L.min_level = (td_log_level)i;
  if (path && *path && strcmp(path, "-")) {
    L.file_fd = open_append(path);
    if (L.file_fd < 0) return -1;
    free(file_path);
    file_path = strdup(path);
  }
  return 0;
}

int log_reopen(void) {
  if (!file_path) return 0;
  log_flush(); /* what was written before the rotation goes to the old file */
  int fd = open_append(file_path);
  if (fd < 0) return -errno; /* keep writing to the old file rather than nowhere */
  close(L.file_fd);
  L.file_fd = fd;
  return 0;
}

void log_set_stdout(bool on) { L.to_stdout = on; }

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return; /* a log sink that fails must not take the service down */
    p += w;
    n -= (size_t)w;
  }
}

void log_flush(void) {
  if (L.len == 0) return;
  if (L.to_stdout) write_all(STDOUT_FILENO, L.buf, L.len);
  if (L.file_fd >= 0) write_all(L.file_fd, L.buf, L.len);
  L.len = 0;
}

static void on_flush_timer(uv_timer_t *t) { log_flush(); }

void log_attach(uv_loop_t *loop) {
  uv_timer_init(loop, &L.timer);
  uv_timer_start(&L.timer, on_flush_timer, TD_LOG_FLUSH_MS, TD_LOG_FLUSH_MS);
  uv_unref((uv_handle_t *)&L.timer);
  L.timer_on = true;
}

void log_close(void) {
  log_flush();
  if (L.timer_on) {
    uv_timer_stop(&L.timer);
    uv_close((uv_handle_t *)&L.timer, NULL);
    L.timer_on = false;
  }
  if (L.file_fd >= 0) close(L.file_fd);
  L.file_fd = -1;
  free(file_path);
  file_path = NULL;
}

uint64_t log_lines(td_log_level level) { return L.lines[level]; }

static void put(const char *s, size_t n) {
  if (L.len + n > LOG_BUF_CAP) n = LOG_BUF_CAP - L.len;
  memcpy(L.buf + L.len, s, n);
  L.len += n;
}

static void putc_(char c) { put(&c, 1); }

static void put_escaped(const char *s, size_t n) {
  char e[JSON_ESCAPED_MAX(LOG_VALUE_MAX) + 2];
  if (n > LOG_VALUE_MAX) n = LOG_VALUE_MAX;
  put(e, (size_t)(json_quote(e, s, n) - e));
}

static void put_key(const char *key) {
  putc_(',');
  put_escaped(key, strlen(key));
  putc_(':');
}

td_logline *log_begin(td_log_level level, const char *event) {
  if (level < L.min_level) return NULL;
  if (L.len > TD_LOG_BUF_FLUSH) log_flush();
  L.line_start = L.len;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char head[96];
  int n = snprintf(head, sizeof(head), "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ\",\"level\":\"%s\",\"event\":",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ts.tv_nsec / 1000, level_names[level]);
  put(head, (size_t)n);
  put_escaped(event, strlen(event));
  L.lines[level]++;
  return &L.line;
}

void log_str(td_logline *l, const char *key, const char *value) {
  if (!value) return;
  log_strn(l, key, value, strlen(value));
}

void log_strn(td_logline *l, const char *key, const char *value, size_t len) {
  put_key(key);
  put_escaped(value, len);
}

void log_int(td_logline *l, const char *key, int64_t value) {
  char num[24];
  int n = snprintf(num, sizeof(num), "%lld", (long long)value);
  put_key(key);
  put(num, (size_t)n);
}

void log_double(td_logline *l, const char *key, double value) {
  char num[32];
  int n = snprintf(num, sizeof(num), "%.6g", value);
  put_key(key);
  put(num, (size_t)n);
}

void log_bool(td_logline *l, const char *key, bool value) {
  put_key(key);
  put(value ? "true" : "false", value ? 4 : 5);
}

void log_end(td_logline *l) {
  put("}\n", 2);
  if (L.len >= LOG_BUF_CAP) { /* the line was cut: close it properly */
    L.len = L.line_start;
  }
}

void log_msg(td_log_level level, const char *event, const char *message) {
  td_logline *l = log_begin(level, event);
  if (!l) return;
  log_str(l, "message", message);
  log_end(l);
}
