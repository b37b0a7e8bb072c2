/* The task state machine on a real libuv loop: phases, seeded failures,
 * capacity, retention, the finished cap, cancellation, and the id table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "app/task.c"

#include "base/log.h"

typedef struct {
  int events[8];   /* by state, counted by the observer */
  int total;
} seen_t;

static void observe(void *ud, const td_task *t) {
  seen_t *s = ud;
  s->events[t->state]++;
  s->total++;
}

static td_config make_cfg(int p1, int p2, double err) {
  td_config c;
  memset(&c, 0, sizeof(c));
  c.task_phase_count = 2;
  c.task_phases_ms[0] = p1;
  c.task_phases_ms[1] = p2;
  c.task_error_rate = err;
  c.task_seed = 7;
  c.task_seed_set = true;
  c.max_tasks = 1000;
  c.task_retention_ms = 60000;
  c.max_finished_tasks = 1000;
  return c;
}

static const task_origin origin = {"127.0.0.1", "ua", 2, "GET", "/hello", 6, "a=1", 3};

static void on_tick(uv_timer_t *t) {}

static void run_until_idle(uv_loop_t *loop, td_tasks *ts) {
  /* a 1 ms tick keeps each UV_RUN_ONCE short even when the next task timer is far off */
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, on_tick, 1, 1);
  /* Tasks created outside a loop callback start in the next check phase: a
   * NOWAIT pass gets there without blocking in poll. Bounded: a stuck state
   * machine fails the test instead of hanging it. */
  uv_run(loop, UV_RUN_NOWAIT);
  for (int i = 0; i < 2000; i++) {
    task_stats st;
    tasks_stats(ts, &st);
    if (st.active == 0) break;
    uv_run(loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  task_stats st;
  tasks_stats(ts, &st);
  if (st.active != 0) fail_msg("tasks never finished");
}

static void setup_log(void) {
  static bool done;
  if (!done) {
    log_open(NULL, "error");
    log_set_stdout(false);
    done = true;
  }
}

static void completes_through_phases(void **state) {
  setup_log();
  uv_loop_t loop;
  uv_loop_init(&loop);
  td_config cfg = make_cfg(5, 5, 0);
  td_tasks *ts = tasks_new(&loop, &cfg);
  seen_t seen = {0};
  tasks_set_observer(ts, observe, &seen);
  bool rejected;
  td_task *t = tasks_start(ts, &origin, &rejected);
  assert_non_null(t);
  assert_int_equal(t->state, TASK_PENDING);
  run_until_idle(&loop, ts);
  assert_int_equal(t->state, TASK_COMPLETED);
  assert_int_equal(t->phase, 2);
  /* pending, running (phase 1), running (phase 2), completed */
  assert_int_equal(seen.total, 4);
  assert_int_equal(seen.events[TASK_RUNNING], 2);
  assert_true(t->finished_ms >= t->started_ms);
  assert_ptr_equal(tasks_find(ts, t->id), t);
  jsonw w;
  jw_init(&w, 0);
  task_write_json(&w, NULL, ts, t);
  json_t *j = json_loads(w.p, 0, NULL);
  jw_free(&w);
  assert_string_equal(json_string_value(json_object_get(j, "state")), "completed");
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(j, "request"), "query"), "a")), "1");
  json_decref(j);
  tasks_close(ts);
  uv_run(&loop, UV_RUN_DEFAULT);
  tasks_free(ts);
  uv_loop_close(&loop);
}

static int outcome_string(uint64_t seed, char *out, int n) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  td_config cfg = make_cfg(0, 0, 0.5);
  cfg.task_seed = seed;
  td_tasks *ts = tasks_new(&loop, &cfg);
  td_task *t[64];
  bool rejected;
  for (int i = 0; i < n; i++) t[i] = tasks_start(ts, &origin, &rejected);
  run_until_idle(&loop, ts);
  int failed = 0;
  for (int i = 0; i < n; i++) {
    out[i] = t[i]->state == TASK_FAILED ? 'F' : 'C';
    failed += t[i]->state == TASK_FAILED;
  }
  out[n] = '\0';
  tasks_close(ts);
  uv_run(&loop, UV_RUN_DEFAULT);
  tasks_free(ts);
  uv_loop_close(&loop);
  return failed;
}

static void failures_follow_the_seed(void **state) {
  setup_log();
  char a[65], b[65], c[65];
  int fa = outcome_string(1234, a, 64);
  outcome_string(1234, b, 64);
  outcome_string(99, c, 64);
  assert_string_equal(a, b);
  assert_string_not_equal(a, c);
  /* 0.5 of 64: anything but all or nothing */
  assert_true(fa > 8 && fa < 56);
}

static void capacity_and_cancel(void **state) {
  setup_log();
  uv_loop_t loop;
  uv_loop_init(&loop);
  td_config cfg = make_cfg(100000, 100000, 0);
  cfg.max_tasks = 3;
  td_tasks *ts = tasks_new(&loop, &cfg);
  bool rejected;
  for (int i = 0; i < 3; i++) assert_non_null(tasks_start(ts, &origin, &rejected));
  assert_null(tasks_start(ts, &origin, &rejected));
  assert_true(rejected);
  uv_run(&loop, UV_RUN_NOWAIT); /* pending -> running */
  task_stats st;
  tasks_stats(ts, &st);
  assert_int_equal(st.running, 3);
  assert_int_equal(st.rejected, 1);
  tasks_cancel_all(ts, "test");
  tasks_stats(ts, &st);
  assert_int_equal(st.active, 0);
  assert_int_equal(st.cancelled, 3);
  tasks_close(ts);
  uv_run(&loop, UV_RUN_DEFAULT);
  tasks_free(ts);
  uv_loop_close(&loop);
}

static void finished_cap_and_expiry(void **state) {
  setup_log();
  uv_loop_t loop;
  uv_loop_init(&loop);
  td_config cfg = make_cfg(0, 0, 0);
  cfg.max_finished_tasks = 5;
  cfg.task_retention_ms = 20;
  td_tasks *ts = tasks_new(&loop, &cfg);
  bool rejected;
  td_task *first = tasks_start(ts, &origin, &rejected);
  uint8_t first_id[16];
  memcpy(first_id, first->id, 16);
  for (int i = 0; i < 9; i++) tasks_start(ts, &origin, &rejected);
  run_until_idle(&loop, ts);
  task_stats st;
  tasks_stats(ts, &st);
  assert_int_equal(st.evicted, 5);
  assert_int_equal(st.retained, 5);
  assert_null(tasks_find(ts, first_id));
  /* the rest expire after the retention time */
  uv_run(&loop, UV_RUN_DEFAULT);
  tasks_stats(ts, &st);
  assert_int_equal(st.expired, 5);
  assert_int_equal(st.retained, 0);
  tasks_close(ts);
  uv_run(&loop, UV_RUN_DEFAULT);
  tasks_free(ts);
  uv_loop_close(&loop);
}

static void id_table_survives_growth_and_removal(void **state) {
  setup_log();
  uv_loop_t loop;
  uv_loop_init(&loop);
  td_config cfg = make_cfg(0, 0, 0);
  cfg.max_tasks = 100000;
  cfg.max_finished_tasks = 2500;
  td_tasks *ts = tasks_new(&loop, &cfg);
  enum { N = 5000 };
  static uint8_t ids[N][16];
  bool rejected;
  for (int i = 0; i < N; i++) memcpy(ids[i], tasks_start(ts, &origin, &rejected)->id, 16);
  run_until_idle(&loop, ts);
  /* the oldest 2500 were evicted (removed from the table), the rest are found */
  for (int i = 0; i < N; i++) {
    if (i < N - 2500) assert_null(tasks_find(ts, ids[i]));
    else assert_non_null(tasks_find(ts, ids[i]));
  }
  tasks_close(ts);
  uv_run(&loop, UV_RUN_DEFAULT);
  tasks_free(ts);
  uv_loop_close(&loop);
}

/* The query object as jansson's did it: a repeated key keeps its first place
 * and its last value, a key or value that is not UTF-8 is left out, a
 * decoded NUL ends a key or value; and a query of many pairs stays linear. */
static void query_object_rules(void **state) {
  static const char q[] = "a=1&b=%41+x&a=2&c=%ff&%ff=1&d=%00z&e&b=3&x%00y=5";
  jsonw w;
  jw_init(&w, 0);
  put_query(&w, NULL, q, sizeof(q) - 1);
  assert_false(w.failed);
  assert_string_equal(w.p, "{\"a\":\"2\",\"b\":\"3\",\"d\":\"\",\"e\":\"\",\"x\":\"5\"}");
  jw_free(&w);
  char many[TD_TASK_MAX_QUERY + 1];
  size_t n = 0;
  while (n + 4 <= TD_TASK_MAX_QUERY) n += (size_t)sprintf(many + n, "%c%c&", 'a' + (int)(n / 3 % 26), 'a' + (int)(n / 78 % 26));
  jw_init(&w, 0);
  put_query(&w, NULL, many, n);
  json_t *j = json_loads(w.p, 0, NULL);
  assert_non_null(j);
  assert_int_equal(json_object_size(j), n / 3);
  json_decref(j);
  jw_free(&w);
}

static void a_task_is_small(void **state) {
  /* the per-task budget is 256 bytes of RSS, struct + captured data + malloc + table slot */
  assert_true(sizeof(td_task) <= 128);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(completes_through_phases), cmocka_unit_test(failures_follow_the_seed),
    cmocka_unit_test(capacity_and_cancel), cmocka_unit_test(finished_cap_and_expiry),
    cmocka_unit_test(id_table_survives_growth_and_removal), cmocka_unit_test(a_task_is_small), cmocka_unit_test(query_object_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
