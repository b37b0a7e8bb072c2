/* Structured logging: one JSON object per line, to stdout and to an optional
 * log file. Lines are built in place (no allocation per line), buffered, and
 * flushed every TD_LOG_FLUSH_MS, when the buffer fills, and at exit.
 *
 *   td_logline *l = log_begin(TD_LOG_INFO, "task_started");
 *   if (l) { log_str(l, "task_id", id); log_int(l, "phase", 1); log_end(l); }
 *
 * Secrets must never be passed to these functions. */
#ifndef TD_LOG_H
#define TD_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

typedef enum { TD_LOG_DEBUG, TD_LOG_INFO, TD_LOG_WARN, TD_LOG_ERROR } td_log_level;
typedef struct td_logline td_logline;

#define TD_LOG_FLUSH_MS 100
/* Above this many buffered bytes a line forces a flush. */
#define TD_LOG_BUF_FLUSH (256 * 1024)

/* path NULL, "" or "-": stdout only. level: debug|info|warn|error. */
int log_open(const char *path, const char *level);
/* Arms the periodic flush on `loop` (the timer does not keep the loop alive). */
void log_attach(uv_loop_t *loop);
void log_flush(void);
/* Flushes, then opens the log file's path again (SIGHUP, after logrotate
 * renamed it): 0, or a negative errno with the old file kept. */
int log_reopen(void);
void log_close(void);
/* Lines written at each level since start (for /status and /metrics). */
uint64_t log_lines(td_log_level level);
/* For tests: suppress stdout (the file still gets every line). */
void log_set_stdout(bool on);

/* Returns NULL when `level` is filtered out. */
td_logline *log_begin(td_log_level level, const char *event);
void log_str(td_logline *l, const char *key, const char *value);
void log_strn(td_logline *l, const char *key, const char *value, size_t len);
void log_int(td_logline *l, const char *key, int64_t value);
void log_double(td_logline *l, const char *key, double value);
void log_bool(td_logline *l, const char *key, bool value);
void log_end(td_logline *l);

/* One-line shorthand: an event with a single "message" field. */
void log_msg(td_log_level level, const char *event, const char *message);

#endif
