/* The glue between a C sink's four functions and the `oort:sink/sink` interface that
 * `wit-bindgen c` generates (sink_world.h): unpacks batches, keeps the context, maps statuses to
 * the WIT error kinds. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oort_sink.h"
#include "sink_world.h"

static char failure[1024];
static oort_context context;
static sink_world_string_t context_strings[3];
static bool configured;

oort_status oort_fail(oort_status status, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(failure, sizeof failure, fmt, args);
  va_end(args);
  return status;
}

void oort_log(oort_level level, const char *fmt, ...) {
  char line[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(line, sizeof line, fmt, args);
  va_end(args);
  sink_world_string_t message;
  sink_world_string_set(&message, line);
  oort_sink_host_log((oort_sink_host_level_t)level, &message);
}

/* Turns a status into the export's return value; the host frees the message it is given. */
static bool finish(oort_status status, exports_oort_sink_sink_sink_error_t *err) {
  if (status == OORT_OK) return true;
  switch (status) {
    case OORT_INVALID_CONFIG: err->tag = OORT_SINK_TYPES_SINK_ERROR_INVALID_CONFIG; break;
    case OORT_REJECTED: err->tag = OORT_SINK_TYPES_SINK_ERROR_REJECTED; break;
    default: err->tag = OORT_SINK_TYPES_SINK_ERROR_TRANSIENT; break;
  }
  /* The three cases share the payload's place in the union. */
  sink_world_string_dup(&err->val.transient, failure[0] ? failure : "the sink failed");
  failure[0] = '\0';
  return false;
}

/* A NUL-terminated copy of a WIT string (which is not terminated). */
static const char *terminated(sink_world_string_t *s, sink_world_string_t *keep) {
  char *copy = malloc(s->len + 1);
  memcpy(copy, s->ptr, s->len);
  copy[s->len] = '\0';
  sink_world_string_free(s);
  keep->ptr = (uint8_t *)copy;
  keep->len = s->len;
  return copy;
}

bool exports_oort_sink_sink_configure(exports_oort_sink_sink_context_t *ctx,
                                      sink_world_string_t *props,
                                      exports_oort_sink_sink_sink_error_t *err) {
  for (int i = 0; i < 3; i++) free(context_strings[i].ptr);
  context.rule_id = terminated(&ctx->rule_id, &context_strings[0]);
  context.action = terminated(&ctx->action, &context_strings[1]);
  context.format = terminated(&ctx->format, &context_strings[2]);
  context.instance = ctx->instance;
  context.generation = ctx->generation;
  oort_status status = oort_configure(&context, (const char *)props->ptr, props->len);
  sink_world_string_free(props);
  configured = status == OORT_OK;
  return finish(status, err);
}

static oort_status not_configured(void) {
  return oort_fail(OORT_INVALID_CONFIG, "the host called the sink before `configure` succeeded");
}

__attribute__((weak)) oort_status oort_open_after(bool has_delivered, uint64_t delivered) {
  (void)has_delivered;
  (void)delivered;
  return oort_open();
}

bool exports_oort_sink_sink_open(uint64_t *maybe_delivered,
                                 exports_oort_sink_sink_sink_error_t *err) {
  if (!configured) return finish(not_configured(), err);
  return finish(oort_open_after(maybe_delivered != NULL,
                                maybe_delivered != NULL ? *maybe_delivered : 0),
                err);
}

/* The batch being collected, for oort_batch_sequence and oort_batch_dynamic. */
static const exports_oort_sink_sink_batch_t *current;

uint64_t oort_batch_sequence(void) { return current != NULL ? current->sequence : 0; }

const char *oort_batch_dynamic(const char *name, size_t index, size_t *len) {
  if (current == NULL) return NULL;
  size_t name_len = strlen(name);
  for (size_t i = 0; i < current->dynamic.len; i++) {
    const oort_sink_types_dynamic_prop_t *prop = &current->dynamic.ptr[i];
    if (prop->name.len != name_len || memcmp(prop->name.ptr, name, name_len) != 0) continue;
    if (index >= prop->values.len) return NULL;
    *len = prop->values.ptr[index].len;
    return (const char *)prop->values.ptr[index].ptr;
  }
  return NULL;
}

bool exports_oort_sink_sink_collect(exports_oort_sink_sink_batch_t *batch,
                                    exports_oort_sink_sink_sink_error_t *err) {
  oort_status status;
  size_t count = batch->ends.len;
  oort_message *messages = calloc(count ? count : 1, sizeof *messages);
  size_t start = 0;
  status = configured ? OORT_OK : not_configured();
  for (size_t i = 0; status == OORT_OK && i < count; i++) {
    size_t end = batch->ends.ptr[i];
    if (end < start || end > batch->payloads.len || i >= batch->timestamps.len) {
      status = oort_fail(OORT_REJECTED, "malformed batch: offsets out of order");
      break;
    }
    messages[i] = (oort_message){batch->payloads.ptr + start, end - start, batch->timestamps.ptr[i]};
    start = end;
  }
  char *header = NULL;
  if (batch->header.is_some) {
    header = malloc(batch->header.val.len + 1);
    memcpy(header, batch->header.val.ptr, batch->header.val.len);
    header[batch->header.val.len] = '\0';
  }
  current = batch;
  if (status == OORT_OK) status = oort_collect(messages, count, header);
  current = NULL;
  free(header);
  free(messages);
  exports_oort_sink_sink_batch_free(batch);
  return finish(status, err);
}

bool exports_oort_sink_sink_close(exports_oort_sink_sink_sink_error_t *err) {
  if (!configured) return true;
  configured = false;
  return finish(oort_close(), err);
}
