/* The one application object: everything that lives as long as the loop.
 * Handlers reach the modules through it (req->app). */
#ifndef TD_APP_H
#define TD_APP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

struct td_server;
struct td_tasks;

typedef struct td_app {
  uv_loop_t *loop;
  td_config *cfg;
  struct td_server *server;
  struct td_tasks *tasks;
  struct td_pipeline *pipeline;
  struct td_hub *hub;
  struct td_feeds *feeds;
  uint64_t start_ms;       /* uv_now at start */
  bool shutting_down;
} td_app;

#endif
