// Server-sent events read with `fetch`, so the bearer token goes in a header (EventSource
// cannot send one) and never in a URL. Yields `{event, data}` per event until the stream
// ends or `signal` aborts.
export async function* events(path, headers, signal) {
  const answer = await fetch(path, { headers: { ...headers, Accept: 'text/event-stream' }, signal });
  if (!answer.ok) {
    const error = new Error(`${path}: ${answer.status}`);
    error.status = answer.status;
    throw error;
  }
  const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = text;
        else if (field === 'data') data.push(text);
      }
      if (data.length) yield { event, data: data.join('\n') };
    }
  }
}

// Follows `path` for as long as `signal` is not aborted, calling `onEvent` per event and
// reconnecting after a pause when the connection drops. `onState` hears 'live' / 'retrying'.
export async function follow(path, headers, signal, onEvent, onState) {
  while (!signal.aborted) {
    try {
      onState('live');
      for await (const e of events(path, headers(), signal)) onEvent(e);
    } catch (error) {
      if (signal.aborted) return;
      if (error.status === 401 || error.status === 404) { onState(error.status === 401 ? 'unauthorized' : 'gone'); return; }
    }
    if (signal.aborted) return;
    onState('retrying');
    await new Promise((r) => setTimeout(r, 2000));
  }
}
