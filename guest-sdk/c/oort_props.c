/* Props for C sinks: a small parser for the flat JSON object a rule gives an action. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oort_sink.h"

typedef struct {
  const char *p;
  const char *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hex(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Parses a JSON string at c->p (on its opening quote) into a malloc'd UTF-8 string. */
static char *parse_string(cursor *c) {
  if (c->p >= c->end || *c->p != '"') return NULL;
  c->p++;
  char *out = malloc((size_t)(c->end - c->p) + 1);
  size_t n = 0;
  while (c->p < c->end && *c->p != '"') {
    char ch = *c->p++;
    if (ch != '\\') {
      out[n++] = ch;
      continue;
    }
    if (c->p >= c->end) break;
    ch = *c->p++;
    switch (ch) {
      case 'n': out[n++] = '\n'; break;
      case 't': out[n++] = '\t'; break;
      case 'r': out[n++] = '\r'; break;
      case 'b': out[n++] = '\b'; break;
      case 'f': out[n++] = '\f'; break;
      case 'u': {
        unsigned cp = 0;
        for (int i = 0; i < 4; i++) {
          int h = c->p < c->end ? hex(*c->p++) : -1;
          if (h < 0) goto fail;
          cp = cp << 4 | (unsigned)h;
        }
        /* Surrogate pairs are kept as two code points: props rarely hold them. */
        if (cp < 0x80) {
          out[n++] = (char)cp;
        } else if (cp < 0x800) {
          out[n++] = (char)(0xC0 | cp >> 6);
          out[n++] = (char)(0x80 | (cp & 0x3F));
        } else {
          out[n++] = (char)(0xE0 | cp >> 12);
          out[n++] = (char)(0x80 | (cp >> 6 & 0x3F));
          out[n++] = (char)(0x80 | (cp & 0x3F));
        }
        break;
      }
      default: out[n++] = ch; break; /* \" \\ \/ */
    }
  }
  if (c->p >= c->end) goto fail;
  c->p++; /* closing quote */
  out[n] = '\0';
  return out;
fail:
  free(out);
  return NULL;
}

static bool literal(cursor *c, const char *word) {
  size_t len = strlen(word);
  if ((size_t)(c->end - c->p) < len || memcmp(c->p, word, len) != 0) return false;
  c->p += len;
  return true;
}

static const char *type_name(oort_type type) {
  switch (type) {
    case OORT_STRING: return "a string";
    case OORT_INT: return "an integer";
    case OORT_DOUBLE: return "a number";
    case OORT_BOOL: return "a boolean";
  }
  return "a value";
}

/* Parses one value into the field's slot. */
static oort_status parse_value(cursor *c, const oort_field *f, char *config) {
  void *slot = config + f->offset;
  const char *start = c->p;
  switch (f->type) {
    case OORT_STRING: {
      char *s = parse_string(c);
      if (!s) break;
      free(*(char **)slot);
      *(char **)slot = s;
      return OORT_OK;
    }
    case OORT_BOOL:
      if (literal(c, "true")) *(bool *)slot = true;
      else if (literal(c, "false")) *(bool *)slot = false;
      else break;
      return OORT_OK;
    case OORT_INT:
    case OORT_DOUBLE: {
      char buf[64];
      size_t n = 0;
      while (c->p + n < c->end && n < sizeof buf - 1 && strchr("+-0123456789.eE", c->p[n])) n++;
      if (n == 0) break;
      memcpy(buf, c->p, n);
      buf[n] = '\0';
      char *stop;
      errno = 0;
      if (f->type == OORT_INT) {
        long long v = strtoll(buf, &stop, 10);
        if (*stop || errno) break;
        *(int64_t *)slot = v;
      } else {
        double v = strtod(buf, &stop);
        if (*stop || errno) break;
        *(double *)slot = v;
      }
      c->p += n;
      return OORT_OK;
    }
  }
  /* The value as the rule wrote it (up to the next separator), for the message. */
  size_t n = 0;
  while (start + n < c->end && start[n] != ',' && start[n] != '}' && n < 60) n++;
  return oort_fail(OORT_INVALID_CONFIG, "prop `%s`: invalid type: %.*s, expected %s", f->name,
                   (int)n, start, type_name(f->type));
}

/* The edit distance between `a` and `b`, ignoring ASCII case; SIZE_MAX when either is 64 bytes
 * or longer (no suggestion for those). */
static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la >= 64 || lb >= 64) return SIZE_MAX;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t above = row[j];
      size_t best = diagonal + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      if (above + 1 < best) best = above + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diagonal = above;
    }
  }
  return row[lb];
}

/* The field whose name is closest to `key`, if it is close enough to be a likely typo (at most
 * one edit in three characters, and at least one): `pathh` -> `path`. */
static const char *closest(const char *key, const oort_field *fields, size_t nfields) {
  const char *best = NULL;
  size_t best_distance = SIZE_MAX;
  for (size_t i = 0; i < nfields; i++) {
    size_t d = distance(key, fields[i].name);
    size_t limit = strlen(fields[i].name) / 3;
    if (d <= (limit > 0 ? limit : 1) && d < best_distance) {
      best = fields[i].name;
      best_distance = d;
    }
  }
  return best;
}

oort_status oort_parse_props(const char *json, size_t len, const oort_field *fields,
                             size_t nfields, void *config) {
  cursor c = {json, json + len};
  bool seen[64] = {false};
  if (nfields > 64) return oort_fail(OORT_INVALID_CONFIG, "props: too many fields");
  skip_ws(&c);
  if (c.p >= c.end || *c.p++ != '{') return oort_fail(OORT_INVALID_CONFIG, "props: expected a JSON object");
  skip_ws(&c);
  bool first = true;
  while (c.p < c.end && *c.p != '}') {
    if (!first) {
      if (*c.p++ != ',') return oort_fail(OORT_INVALID_CONFIG, "props: malformed JSON");
      skip_ws(&c);
    }
    first = false;
    char *key = parse_string(&c);
    if (!key) return oort_fail(OORT_INVALID_CONFIG, "props: malformed JSON");
    size_t i = 0;
    while (i < nfields && strcmp(fields[i].name, key) != 0) i++;
    if (i == nfields) {
      const char *near = closest(key, fields, nfields);
      oort_status s = near ? oort_fail(OORT_INVALID_CONFIG, "prop `%s`: unknown prop (did you mean `%s`?)", key, near)
                           : oort_fail(OORT_INVALID_CONFIG, "prop `%s`: unknown prop", key);
      free(key);
      return s;
    }
    free(key);
    skip_ws(&c);
    if (c.p >= c.end || *c.p++ != ':') return oort_fail(OORT_INVALID_CONFIG, "props: malformed JSON");
    skip_ws(&c);
    oort_status s = parse_value(&c, &fields[i], config);
    if (s != OORT_OK) return s;
    seen[i] = true;
    skip_ws(&c);
  }
  if (c.p >= c.end) return oort_fail(OORT_INVALID_CONFIG, "props: malformed JSON");
  for (size_t i = 0; i < nfields; i++) {
    if (fields[i].required && !seen[i]) {
      return oort_fail(OORT_INVALID_CONFIG, "prop `%s`: missing (it is required)", fields[i].name);
    }
  }
  return OORT_OK;
}
