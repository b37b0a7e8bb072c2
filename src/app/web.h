/* Dashboard assets, loaded into memory at start from the web root, so that
 * serving them never touches the disk on the loop. */
#ifndef TD_WEB_H
#define TD_WEB_H

#include <stddef.h>

/* Loads every regular file under `root` (recursively). Returns the number
 * of files, or a negative errno. */
int web_load(const char *root);
void web_free(void);
/* `path` relative to the root ("index.html", "vendor/uPlot.min.js"). */
const char *web_find(const char *path, size_t path_len, size_t *len, const char **content_type);

#endif
