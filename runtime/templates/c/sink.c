/* The `{{key}}` sink: writes every message to Oort's log with a prefix. */
#include <stddef.h>
#include <stdlib.h>

#include "oort_sink.h"

typedef struct {
  /* Put before every message. */
  char *prefix;
} config;

static const oort_field fields[] = {
    {"prefix", OORT_STRING, offsetof(config, prefix), false},
};

static config cfg;

oort_status oort_configure(const oort_context *ctx, const char *props, size_t len) {
  (void)ctx;
  return oort_parse_props(props, len, fields, sizeof fields / sizeof *fields, &cfg);
}

oort_status oort_open(void) { return OORT_OK; }

oort_status oort_collect(const oort_message *messages, size_t count, const char *header) {
  (void)header;
  for (size_t i = 0; i < count; i++) {
    oort_log(OORT_INFO, "%s%.*s", cfg.prefix ? cfg.prefix : "", (int)messages[i].len,
             (const char *)messages[i].payload);
  }
  return OORT_OK;
}

oort_status oort_close(void) { return OORT_OK; }
