/* tickerd entry point: load the configuration and run the loop. */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"

int main(int argc, char **argv) {
  td_config cfg;
  int rc = cfg_load(&cfg, argc, argv);
  if (rc != 0) {
    cfg_free(&cfg);
    return rc > 0 ? 0 : 2;
  }
  cfg_free(&cfg);
  return 0;
}
