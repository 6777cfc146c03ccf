// The `jsLog` sink: writes every message to Oort's log with a prefix, at the level the rule
// asks for, and counts what it wrote when it closes. The prefix may be a template
// (`"{{.device}}> "`), evaluated by the host for each message.
import { InvalidConfig, Sink, exportSink, log } from '../../guest-sdk/js/oort.js';

class LogLines extends Sink {
  static config = {
    prefix: { type: 'string', default: '' },
    level: { type: 'string', default: 'info' },
  };

  constructor(ctx, config) {
    super(ctx, config);
    this.write = log[config.level];
    if (!this.write) throw new InvalidConfig(`prop \`level\`: unknown level ${JSON.stringify(config.level)}, expected trace, debug, info, warn or error`);
    this.messages = 0;
  }

  collect(batch) {
    const prefixes = batch.dynamic('prefix');
    batch.forEach((message, i) => {
      this.write((prefixes?.[i] ?? this.config.prefix) + message.text());
    });
    this.messages += batch.length;
  }

  close() {
    log.info(`${this.ctx.action}: wrote ${this.messages} messages`);
  }
}

export const sink = exportSink(LogLines);
