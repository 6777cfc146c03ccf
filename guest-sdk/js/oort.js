// Write Oort sinks in JavaScript: subclass `Sink`, describe the props in `static config`, and
// export `exportSink(MySink)` as `sink`. componentize-js builds the module into a component for
// the `oort:sink` world. Throw `InvalidConfig`, `Transient` or `Rejected` to tell the host what to
// do next; any other exception traps the instance, and the host replaces it. This SDK targets
// oort:sink@0.2.0 (wit/sink.wit): each batch is an array of `Message` with the batch's
// `sequence` (a BigInt) and `dynamic(name)`, the host's value of a templated prop per message.
import { log as hostLog } from 'oort:sink/host@0.2.0';
import { publish as hostPublish } from 'oort:sink/mqtt@0.2.0';

/** Why a call failed; the subclass tells the host what to do next. */
export class SinkError extends Error {}
/** The props are wrong: the rule does not start. Name the prop in the message. */
export class InvalidConfig extends SinkError {}
/** A passing fault: the host retries the batch with backoff, then caches it. */
export class Transient extends SinkError {}
/** The target refuses this batch for good: it goes to the dead-letter output. */
export class Rejected extends SinkError {}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** One message of a batch: its encoded payload (bytes) and when it was produced. */
export class Message {
  constructor(payload, timestampMs) {
    this.payload = payload;
    this.timestampMs = timestampMs;
  }

  /** The payload as text; a payload that is not UTF-8 is `Rejected`. */
  text() {
    try {
      return decoder.decode(this.payload);
    } catch (e) {
      throw new Rejected(`payload is not UTF-8: ${e.message}`);
    }
  }

  /** The payload parsed as JSON; a payload that is not JSON is `Rejected`. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      throw e instanceof SinkError ? e : new Rejected(`payload is not JSON: ${e.message}`);
    }
  }
}

/**
 * Base class of a sink. `static config` names the props: `{ name: { type, default } }`, `type`
 * one of `string`, `number`, `integer`, `boolean`, `array`, `object`; a prop without a default is
 * required. Unknown props, missing ones and values of the wrong type are `InvalidConfig`.
 */
export class Sink {
  static config = {};

  /** Checks the config and keeps it. Must not touch the outside world. */
  constructor(ctx, config) {
    this.ctx = ctx;
    this.config = config;
  }

  /** Connects to the target. Called once, after the constructor (by the default `openAfter`). */
  open() {}

  /**
   * What the host calls after the constructor: `delivered` is the highest batch sequence (a
   * BigInt) the host knows was delivered, `undefined` when the numbering starts afresh (forget
   * any marker kept from an earlier run). Batches above it but not above the sink's own marker
   * were written before a crash lost their acknowledgement: skip them. Calls `open`.
   */
  openAfter(_delivered) {
    this.open();
  }

  /** Delivers one batch (an array of `Message` with `sequence` and `dynamic(name)`), in order. */
  collect(_batch) {
    throw new Error('a sink must implement collect');
  }

  /** Flushes and releases everything. Called once. */
  close() {}
}

/** Writes to Oort's log; lines are tagged with the rule, action and instance. */
export const log = Object.fromEntries(
  ['trace', 'debug', 'info', 'warn', 'error'].map((level) => [level, (m) => hostLog(level, String(m))]),
);

const QOS = ['at-most-once', 'at-least-once', 'exactly-once'];

/** Publishes through the host to the broker and topics the action grants. */
export function publish(topic, payload, qos = 1, retain = false) {
  const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  try {
    hostPublish(topic, bytes, QOS[qos], retain);
  } catch (e) {
    throw fromWit(e.payload ?? e);
  }
}

const TYPES = {
  string: (v) => typeof v === 'string',
  number: (v) => typeof v === 'number',
  integer: (v) => Number.isInteger(v),
  boolean: (v) => typeof v === 'boolean',
  array: (v) => Array.isArray(v),
  object: (v) => v !== null && typeof v === 'object' && !Array.isArray(v),
};

/** The edit distance between two strings (insertions, deletions, substitutions, swaps of two
 * neighbours). */
function distance(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/** The known name closest to a misspelt one (`paht` → `path`), if one is close enough. */
function closest(word, names) {
  let best = null;
  let bestDistance = Infinity;
  for (const name of names) {
    const d = distance(word.toLowerCase(), name.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return best !== null && bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : null;
}

/** The props checked against a `static config` description, defaults filled in. */
export function parseConfig(schema, props) {
  if (!TYPES.object(props)) throw new InvalidConfig('props: expected a JSON object');
  const config = {};
  for (const [key, value] of Object.entries(props)) {
    const field = schema[key];
    if (!field) {
      const close = closest(key, Object.keys(schema));
      const hint = close ? ` (did you mean \`${close}\`?)` : '';
      throw new InvalidConfig(`prop \`${key}\`: unknown prop, expected one of ${Object.keys(schema).join(', ')}${hint}`);
    }
    if (!TYPES[field.type](value)) {
      const kind = Array.isArray(value) ? 'list' : value === null ? 'null' : typeof value;
      throw new InvalidConfig(`prop \`${key}\`: invalid type: ${kind} ${JSON.stringify(value)}, expected ${field.type}`);
    }
    config[key] = value;
  }
  for (const [key, field] of Object.entries(schema)) {
    if (key in config) continue;
    if (!('default' in field)) throw new InvalidConfig(`prop \`${key}\`: missing (it has no default)`);
    config[key] = field.default;
  }
  return config;
}

function toWit(e) {
  if (e instanceof InvalidConfig) return { tag: 'invalid-config', val: e.message };
  if (e instanceof Rejected) return { tag: 'rejected', val: e.message };
  if (e instanceof SinkError) return { tag: 'transient', val: e.message };
  throw e; // not a sink error: trap, the host replaces the instance
}

function fromWit(err) {
  const kind = { 'invalid-config': InvalidConfig, transient: Transient, rejected: Rejected }[err.tag] ?? Transient;
  return new kind(err.val);
}

function unpack(batch) {
  const messages = new Array(batch.ends.length);
  let start = 0;
  for (let i = 0; i < batch.ends.length; i++) {
    const end = batch.ends[i];
    messages[i] = new Message(batch.payloads.subarray(start, end), Number(batch.timestamps[i]));
    start = end;
  }
  messages.sequence = batch.sequence ?? 0n;
  const dynamic = new Map((batch.dynamic ?? []).map((p) => [p.name, p.values]));
  messages.dynamic = (name) => dynamic.get(name);
  return messages;
}

/** The `oort:sink/sink` interface for a `Sink` subclass: `export const sink = exportSink(MySink);` */
export function exportSink(SinkClass) {
  let sink = null;
  const call = (fn) => {
    try {
      fn();
    } catch (e) {
      throw toWit(e);
    }
  };
  const live = () => {
    if (!sink) throw new InvalidConfig('the host called the sink before `configure` succeeded');
    return sink;
  };
  return {
    configure(ctx, props) {
      call(() => {
        let raw;
        try {
          raw = JSON.parse(props);
        } catch (e) {
          throw new InvalidConfig(`props: ${e.message}`);
        }
        // Errors name the prop, its value and the type expected; the host adds the action.
        sink = new SinkClass(Object.freeze({ ...ctx }), parseConfig(SinkClass.config, raw));
      });
    },
    open(delivered) {
      call(() => live().openAfter(delivered));
    },
    collect(batch) {
      call(() => live().collect(unpack(batch)));
    },
    close() {
      call(() => {
        const closing = sink;
        sink = null;
        closing?.close();
      });
    },
  };
}
