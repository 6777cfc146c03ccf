// The `{{key}}` sink: writes every message to Oort's log with a prefix.
import { Sink, exportSink, log } from './oort.js';

class {{plugin}} extends Sink {
  static config = {
    prefix: { type: 'string', default: '' },
  };

  collect(batch) {
    for (const message of batch) {
      log.info(this.config.prefix + message.text());
    }
  }
}

export const sink = exportSink({{plugin}});
