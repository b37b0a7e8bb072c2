/* In-memory copy of the dashboard's files. */
#include "web.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/api.h"
#include "app/app.h"
#include "http/http.h"

/* The dashboard is a handful of small files; refuse anything unexpected. */
#define WEB_MAX_FILES 64
#define WEB_MAX_FILE_BYTES (4 * 1024 * 1024)
#define WEB_MAX_DEPTH 4

typedef struct {
  char *path;
  char *data;
  size_t len;
  const char *type;
} web_file;

static web_file files[WEB_MAX_FILES];
static int nfiles;

static const char *type_of(const char *path) {
  const char *dot = strrchr(path, '.');
  if (!dot) return "application/octet-stream";
  if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
  if (!strcmp(dot, ".js") || !strcmp(dot, ".mjs")) return "text/javascript; charset=utf-8";
  if (!strcmp(dot, ".css")) return "text/css; charset=utf-8";
  if (!strcmp(dot, ".svg")) return "image/svg+xml";
  if (!strcmp(dot, ".png")) return "image/png";
  if (!strcmp(dot, ".json")) return "application/json";
  if (!strcmp(dot, ".ico")) return "image/x-icon";
  return "application/octet-stream";
}

static int load_file(const char *full, const char *rel) {
  if (nfiles == WEB_MAX_FILES) return -ENOSPC;
  FILE *f = fopen(full, "rb");
  if (!f) return -errno;
  struct stat st;
  if (fstat(fileno(f), &st) || st.st_size > WEB_MAX_FILE_BYTES) {
    fclose(f);
    return -EFBIG;
  }
  char *data = malloc((size_t)st.st_size + 1);
  size_t got = data ? fread(data, 1, (size_t)st.st_size, f) : 0;
  fclose(f);
  if (!data || got != (size_t)st.st_size) {
    free(data);
    return -EIO;
  }
  files[nfiles++] = (web_file){strdup(rel), data, got, type_of(rel)};
  return 0;
}

static int load_dir(const char *root, const char *rel, int depth) {
  if (depth > WEB_MAX_DEPTH) return 0;
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s/%s", root, rel);
  DIR *d = opendir(dir);
  if (!d) return -errno;
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue; /* also skips the build stamp */
    char child_rel[1024], full[4096];
    snprintf(child_rel, sizeof(child_rel), "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    snprintf(full, sizeof(full), "%s/%s", root, child_rel);
    struct stat st;
    if (stat(full, &st)) continue;
    if (S_ISDIR(st.st_mode)) rc = load_dir(root, child_rel, depth + 1);
    else if (S_ISREG(st.st_mode)) rc = load_file(full, child_rel);
  }
  closedir(d);
  return rc;
}

int web_load(const char *root) {
  int rc = load_dir(root, "", 0);
  return rc < 0 ? rc : nfiles;
}

void web_free(void) {
  for (int i = 0; i < nfiles; i++) {
    free(files[i].path);
    free(files[i].data);
  }
  nfiles = 0;
}

const char *web_find(const char *path, size_t path_len, size_t *len, const char **content_type) {
  for (int i = 0; i < nfiles; i++) {
    if (strlen(files[i].path) == path_len && !memcmp(files[i].path, path, path_len)) {
      *len = files[i].len;
      *content_type = files[i].type;
      return files[i].data;
    }
  }
  return NULL;
}

/* GET /dashboard and /dashboard/<file>; GET / for browsers. Only files loaded
 * at start can be served, so no path can escape the web root. */
void api_dashboard(td_request *req) {
  const char *rel = "index.html";
  size_t rel_len = strlen(rel);
  if (req->params[0] && req->param_lens[0] > 0) {
    rel = req->params[0];
    rel_len = req->param_lens[0];
  }
  size_t len;
  const char *type;
  const char *data = web_find(rel, rel_len, &len, &type);
  if (!data) {
    http_error(req, 404, nfiles ? "not_found" : "dashboard_not_built",
               nfiles ? "no such dashboard file" : "dashboard assets were not found (see --web-root)", NULL);
    return;
  }
  http_respond(req, 200, type, data, len,
               "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
               "Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'\r\n");
}
