/* The `cJsonl` sink: writes each message as one line of a file (JSON lines). It truncates the
 * file when the rule starts (generation 0), appends in a replacement instance, and flushes
 * every batch before it returns. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oort_sink.h"

typedef struct {
  /* The file to write; granted to the sink by its manifest. */
  char *path;
} config;

static const oort_field fields[] = {
    {"path", OORT_STRING, offsetof(config, path), true},
};

static config cfg;
static FILE *file;
static bool truncate_at_open;

oort_status oort_configure(const oort_context *ctx, const char *props, size_t len) {
  oort_status status = oort_parse_props(props, len, fields, sizeof fields / sizeof *fields, &cfg);
  if (status != OORT_OK) return status;
  if (cfg.path[0] == '\0') return oort_fail(OORT_INVALID_CONFIG, "prop `path`: must not be empty");
  truncate_at_open = ctx->generation == 0;
  return OORT_OK;
}

oort_status oort_open(void) {
  file = fopen(cfg.path, truncate_at_open ? "w" : "a");
  if (!file) return oort_fail(OORT_TRANSIENT, "cannot open %s: %s", cfg.path, strerror(errno));
  return OORT_OK;
}

oort_status oort_collect(const oort_message *messages, size_t count, const char *header) {
  (void)header;
  for (size_t i = 0; i < count; i++) {
    if (fwrite(messages[i].payload, 1, messages[i].len, file) != messages[i].len || fputc('\n', file) == EOF) {
      return oort_fail(OORT_TRANSIENT, "cannot write %s: %s", cfg.path, strerror(errno));
    }
  }
  if (fflush(file) != 0) return oort_fail(OORT_TRANSIENT, "cannot write %s: %s", cfg.path, strerror(errno));
  return OORT_OK;
}

oort_status oort_close(void) {
  if (file && fclose(file) != 0) {
    file = NULL;
    return oort_fail(OORT_TRANSIENT, "cannot close %s: %s", cfg.path, strerror(errno));
  }
  file = NULL;
  return OORT_OK;
}
