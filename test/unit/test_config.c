/* Config parsing: defaults, environment, flags (the flag wins), and errors
 * that name the option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "app/config.h"

static int load(td_config *c, int argc, char **argv, char **env) {
  /* keep stderr quiet for the error cases */
  FILE *saved = stderr;
  stderr = fopen("/dev/null", "w");
  int rc = cfg_load_env(c, argc, argv, env);
  fclose(stderr);
  stderr = saved;
  return rc;
}

static void defaults(void **state) {
  td_config c;
  char *argv[] = {"tickerd", NULL};
  assert_int_equal(load(&c, 1, argv, NULL), 0);
  assert_string_equal(c.host, "127.0.0.1");
  assert_int_equal(c.port, 8000);
  assert_int_equal(c.task_phase_count, 2);
  assert_int_equal(c.task_phases_ms[0], 5000);
  assert_int_equal(c.task_phases_ms[1], 3000);
  assert_true(c.task_error_rate > 0.099 && c.task_error_rate < 0.101);
  assert_false(c.task_seed_set);
  assert_int_equal(c.max_tasks, 1000000);
  assert_string_equal(c.log_file, "async_tasks.log");
  assert_string_equal(c.redis_url, "redis://127.0.0.1:6379");
  assert_int_equal(c.feed, TD_FEED_SIM);
  assert_string_equal(c.symbols, "AAPL,MSFT,GOOGL,AAL");
  assert_null(c.ingest_token);
  cfg_free(&c);
}

static void env_then_flag(void **state) {
  td_config c;
  char *env[] = {"TICKERD_PORT=9001", "TICKERD_MAX_TASKS=7", "REDIS_URL=redis://h:1/2", "APCA_API_KEY_ID=k",
                 "TICKERD_TASK_SEED=99", NULL};
  char *argv[] = {"tickerd", "--port", "9002", "--task-phases-ms=10,20,30", "--feed", "none", NULL};
  assert_int_equal(load(&c, 6, argv, env), 0);
  assert_int_equal(c.port, 9002);
  assert_int_equal(c.max_tasks, 7);
  assert_string_equal(c.redis_url, "redis://h:1/2");
  assert_string_equal(c.alpaca_key_id, "k");
  assert_true(c.task_seed_set);
  assert_int_equal(c.task_seed, 99);
  assert_int_equal(c.task_phase_count, 3);
  assert_int_equal(c.task_phases_ms[2], 30);
  assert_int_equal(c.feed, TD_FEED_NONE);
  cfg_free(&c);
}

static void bad_values(void **state) {
  const char *cases[][3] = {
    {"--port", "65536", NULL}, {"--port", "-1", NULL}, {"--port", "12x", NULL},
    {"--task-error-rate", "1.5", NULL}, {"--task-phases-ms", "", NULL}, {"--task-phases-ms", "1,,2", NULL},
    {"--task-phases-ms", "1,2,3,4,5,6,7,8,9", NULL}, {"--feed", "kafka", NULL}, {"--task-seed", "-3", NULL},
    {"--max-tasks", "0", NULL}, {"--log-level", "loud", NULL}, {"--auth", "maybe", NULL},
    {"--channel-prefix", "", NULL}, {"--nope", "1", NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    td_config c;
    char *argv[] = {"tickerd", (char *)cases[i][0], (char *)cases[i][1], NULL};
    assert_int_equal(load(&c, 3, argv, NULL), -1);
    cfg_free(&c);
  }
  td_config c;
  char *missing[] = {"tickerd", "--port", NULL};
  assert_int_equal(load(&c, 2, missing, NULL), -1);
  cfg_free(&c);
  char *env[] = {"TICKERD_SIM_RATE=fast", NULL};
  char *argv[] = {"tickerd", NULL};
  assert_int_equal(load(&c, 1, argv, env), -1);
  cfg_free(&c);
}

static void soft_over_hard_is_refused(void **state) {
  td_config c;
  char *argv[] = {"tickerd", "--client-soft-bytes", "4096", "--client-hard-bytes", "2048", NULL};
  assert_int_equal(load(&c, 5, argv, NULL), -1);
  cfg_free(&c);
}

static void auth_needs_secret(void **state) {
  td_config c;
  char *argv[] = {"tickerd", "--auth", "on", NULL};
  assert_int_equal(load(&c, 3, argv, NULL), -1);
  cfg_free(&c);
  char *env[] = {"TICKERD_JWT_SECRET=s3cret", NULL};
  assert_int_equal(load(&c, 3, argv, env), 0);
  assert_true(c.auth);
  cfg_free(&c);
}

static void help_and_version_exit_zero(void **state) {
  td_config c;
  FILE *saved = stdout;
  stdout = fopen("/dev/null", "w");
  char *h[] = {"tickerd", "--help", NULL};
  int rc1 = cfg_load_env(&c, 2, h, NULL);
  cfg_free(&c);
  char *v[] = {"tickerd", "--version", NULL};
  int rc2 = cfg_load_env(&c, 2, v, NULL);
  cfg_free(&c);
  fclose(stdout);
  stdout = saved;
  assert_int_equal(rc1, 1);
  assert_int_equal(rc2, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(defaults), cmocka_unit_test(env_then_flag), cmocka_unit_test(bad_values),
    cmocka_unit_test(soft_over_hard_is_refused), cmocka_unit_test(auth_needs_secret),
    cmocka_unit_test(help_and_version_exit_zero),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
