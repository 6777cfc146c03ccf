/*
 * Write Oort sinks in C.
 *
 * A sink defines the four functions below; the SDK (oort_sink.c) exports them as the
 * `oort:sink/sink` interface, unpacks each batch into an array of `oort_message`, and turns a
 * returned status into the WIT error kind. Props are a JSON object: describe the fields with an
 * array of `oort_field` and call `oort_parse_props` from `oort_configure`.
 *
 * Call order: oort_configure -> oort_open -> oort_collect* -> oort_close (see wit/sink.wit:
 * this SDK targets oort:sink@0.2.0; components built against 0.1.0 still run). During
 * oort_collect, oort_batch_sequence() and oort_batch_dynamic() tell the batch's sequence number
 * and the host's value of a templated prop for each message.
 * A trap (abort, out-of-bounds access) discards the instance; the host replaces it.
 */
#ifndef OORT_SINK_H
#define OORT_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a call did; anything but OORT_OK tells the host what to do next. */
typedef enum {
  OORT_OK = 0,
  /* The props are wrong: the rule does not start. Name the prop in the message. */
  OORT_INVALID_CONFIG,
  /* A passing fault: the host retries the batch with backoff, then caches it. */
  OORT_TRANSIENT,
  /* The target refuses this batch for good: it goes to the dead-letter output. */
  OORT_REJECTED,
} oort_status;

/* Who this instance works for. The strings are NUL-terminated and live until oort_close. */
typedef struct {
  const char *rule_id;
  const char *action;
  uint32_t instance;
  /* How payloads are encoded: "json" or "delimited". */
  const char *format;
  /* 0 for the action's first instance; higher for a replacement. Reset the target only at 0. */
  uint32_t generation;
} oort_context;

/* One message of a batch: its encoded payload (not NUL-terminated) and when it was produced. */
typedef struct {
  const uint8_t *payload;
  size_t len;
  int64_t timestamp_ms;
} oort_message;

/* The sink's four functions, written by the sink's author. */
oort_status oort_configure(const oort_context *ctx, const char *props, size_t props_len);
oort_status oort_open(void);
oort_status oort_collect(const oort_message *messages, size_t count, const char *header);
oort_status oort_close(void);

/* Optional: what the host calls instead of oort_open when the sink defines it. `delivered` is
 * the highest batch sequence the host knows was delivered (`has_delivered` false: the numbering
 * starts afresh, forget any marker kept from an earlier run). Batches above it but not above the
 * sink's own marker were written before a crash lost their acknowledgement: skip them. The
 * SDK's default calls oort_open. */
oort_status oort_open_after(bool has_delivered, uint64_t delivered);

/* The sequence number of the batch being collected (valid during oort_collect). */
uint64_t oort_batch_sequence(void);

/* The value of templated prop `name` (e.g. "path" holding "{{.device}}.csv") for message
 * `index` of the batch being collected, as `*len` bytes (not NUL-terminated); NULL when the prop
 * holds no template or `index` is out of range. Valid during oort_collect. */
const char *oort_batch_dynamic(const char *name, size_t index, size_t *len);

/* Records the message of a failure and returns `status`: `return oort_fail(OORT_TRANSIENT,
 * "cannot open %s", path);`. */
oort_status oort_fail(oort_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The type of a prop. */
typedef enum { OORT_STRING, OORT_INT, OORT_DOUBLE, OORT_BOOL } oort_type;

/* One prop: its JSON name, type, where it goes in the config struct, and whether it must be
 * given. A string prop is stored as a `char *` the SDK allocates. */
typedef struct {
  const char *name;
  oort_type type;
  size_t offset;
  bool required;
} oort_field;

/* Parses the props (a flat JSON object) into `config`: unknown fields (with the closest known
 * name, `did you mean`), missing required ones, values of the wrong type and malformed JSON are
 * OORT_INVALID_CONFIG naming the prop. Fields
 * not given keep the value `config` had. */
oort_status oort_parse_props(const char *json, size_t len, const oort_field *fields,
                             size_t nfields, void *config);

/* Writes a line to Oort's log, tagged with the rule, action and instance. */
typedef enum { OORT_TRACE, OORT_DEBUG, OORT_INFO, OORT_WARN, OORT_ERROR } oort_level;
void oort_log(oort_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
