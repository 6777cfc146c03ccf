/* The `cJsonl` sink: writes each message as one line of a file (JSON lines). `path` may be a
 * template (`"out/{{.device}}.jsonl"`): the host evaluates it for each message and the sink
 * writes the message to the file its value names, with at most MAX_OPEN files open at once (the
 * least recently used is closed first, and appended to when its path comes again). Each file is
 * truncated the first time a generation-0 instance meets it (the rule starts) and appended to in
 * a replacement instance; every file a batch wrote is flushed before `collect` returns. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oort_sink.h"

/* How many files stay open at once. */
#define MAX_OPEN 16

typedef struct {
  /* The file to write, or a template naming one per message; granted by the manifest. */
  char *path;
} config;

static const oort_field fields[] = {
    {"path", OORT_STRING, offsetof(config, path), true},
};

/* A file this instance has met: open (`file` set) or closed to make room. */
typedef struct {
  char *path;
  FILE *file;
  /* When it was last written (a counter), to close the least recently used. */
  uint64_t used;
  /* Written in the current batch: flushed before `collect` returns. */
  bool dirty;
} target;

static config cfg;
static bool templated;
static bool truncate_at_open;
static target *targets;
static size_t ntargets;
static uint64_t clock_ticks;

oort_status oort_configure(const oort_context *ctx, const char *props, size_t len) {
  oort_status status = oort_parse_props(props, len, fields, sizeof fields / sizeof *fields, &cfg);
  if (status != OORT_OK) return status;
  if (cfg.path[0] == '\0') return oort_fail(OORT_INVALID_CONFIG, "prop `path`: must not be empty");
  templated = strstr(cfg.path, "{{") != NULL;
  truncate_at_open = ctx->generation == 0;
  return OORT_OK;
}

/* Closes the least recently used open file. */
static oort_status close_oldest(void) {
  target *oldest = NULL;
  for (size_t i = 0; i < ntargets; i++) {
    if (targets[i].file && (!oldest || targets[i].used < oldest->used)) oldest = &targets[i];
  }
  if (!oldest) return OORT_OK;
  FILE *file = oldest->file;
  oldest->file = NULL;
  if (fclose(file) != 0) {
    return oort_fail(OORT_TRANSIENT, "cannot close %s: %s", oldest->path, strerror(errno));
  }
  return OORT_OK;
}

/* The open file for `path` (`len` bytes), opened (truncated the first time, at generation 0)
 * when it is not. */
static oort_status file_for(const char *path, size_t len, target **out) {
  target *found = NULL;
  for (size_t i = 0; i < ntargets && !found; i++) {
    if (strlen(targets[i].path) == len && memcmp(targets[i].path, path, len) == 0) found = &targets[i];
  }
  bool first = found == NULL;
  if (first) {
    target *grown = realloc(targets, (ntargets + 1) * sizeof *targets);
    char *copy = malloc(len + 1);
    if (!grown || !copy) {
      free(copy);
      if (grown) targets = grown;
      return oort_fail(OORT_TRANSIENT, "out of memory");
    }
    targets = grown;
    memcpy(copy, path, len);
    copy[len] = '\0';
    found = &targets[ntargets++];
    *found = (target){.path = copy};
  }
  if (!found->file) {
    size_t open = 0;
    for (size_t i = 0; i < ntargets; i++) open += targets[i].file != NULL;
    if (open >= MAX_OPEN) {
      oort_status status = close_oldest();
      if (status != OORT_OK) return status;
    }
    found->file = fopen(found->path, first && truncate_at_open ? "w" : "a");
    if (!found->file) {
      return oort_fail(OORT_TRANSIENT, "cannot open %s: %s", found->path, strerror(errno));
    }
  }
  found->used = ++clock_ticks;
  *out = found;
  return OORT_OK;
}

oort_status oort_open(void) {
  target *t;
  return templated ? OORT_OK : file_for(cfg.path, strlen(cfg.path), &t);
}

oort_status oort_collect(const oort_message *messages, size_t count, const char *header) {
  (void)header;
  oort_status status = OORT_OK;
  for (size_t i = 0; i < count && status == OORT_OK; i++) {
    size_t len = strlen(cfg.path);
    const char *path = cfg.path;
    if (templated) {
      path = oort_batch_dynamic("path", i, &len);
      if (!path) return oort_fail(OORT_REJECTED, "message %zu: the host gave no value for `path`", i);
    }
    target *t;
    status = file_for(path, len, &t);
    if (status != OORT_OK) break;
    t->dirty = true;
    if (fwrite(messages[i].payload, 1, messages[i].len, t->file) != messages[i].len ||
        fputc('\n', t->file) == EOF) {
      status = oort_fail(OORT_TRANSIENT, "cannot write %s: %s", t->path, strerror(errno));
    }
  }
  for (size_t i = 0; i < ntargets; i++) {
    if (!targets[i].dirty) continue;
    targets[i].dirty = false;
    if (targets[i].file && fflush(targets[i].file) != 0 && status == OORT_OK) {
      status = oort_fail(OORT_TRANSIENT, "cannot write %s: %s", targets[i].path, strerror(errno));
    }
  }
  return status;
}

oort_status oort_close(void) {
  oort_status status = OORT_OK;
  for (size_t i = 0; i < ntargets; i++) {
    if (targets[i].file && fclose(targets[i].file) != 0 && status == OORT_OK) {
      status = oort_fail(OORT_TRANSIENT, "cannot close %s: %s", targets[i].path, strerror(errno));
    }
    free(targets[i].path);
  }
  free(targets);
  targets = NULL;
  ntargets = 0;
  return status;
}
