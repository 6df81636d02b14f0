// What the Workers adapter (entry.py) has JavaScript do for every chunk of a body. Python
// woken per chunk, or per step of a stream operation, costs the Worker far more CPU than
// JavaScript doing the same (BENCHMARKS.md): here Python wakes once per stream, at its end.
// The decisions stay in Python (relay/pipeline/deliver.py); this module only moves bytes.

/**
 * Pass `source`, an upstream answer's event stream, to the client chunk by chunk as it
 * arrives, unchanged, and keep a copy of what passed for the audit row.
 *
 * Returns [client, ended]: the stream for the client's Response (a native pipe, so a client
 * that hangs up makes the next write fail), and a promise of
 * {copy: Uint8Array, firstAt: ms since the epoch or null, failure: error name or null,
 * clientGone: boolean}. When the client has gone, `abort` (the upstream call's) is called,
 * so the provider stops generating for nobody, and what arrives until it takes effect still
 * joins the copy; when the upstream breaks off, the client's stream fails with its error.
 */
export function observe(source, abort) {
  const pipe = new IdentityTransformStream();
  return [pipe.readable, pump(source.getReader(), pipe.writable.getWriter(), abort)];
}

async function pump(reader, writer, abort) {
  const parts = [];
  let size = 0;
  let firstAt = null;
  let failure = null;
  let clientGone = false;
  for (;;) {
    let step;
    try {
      step = await reader.read();
    } catch (error) {
      failure = (error && error.name) || "Error";
      writer.abort(error).catch(() => {});
      break;
    }
    if (step.done) {
      await writer.close().catch(() => {});
      break;
    }
    const chunk = step.value;
    if (firstAt === null) firstAt = Date.now();
    parts.push(chunk.slice()); // the client's write may take the chunk's buffer
    size += chunk.byteLength;
    if (clientGone) continue; // what comes until the abort takes effect still counts
    try {
      await writer.write(chunk);
    } catch {
      clientGone = true;
      abort();
    }
  }
  if (clientGone) failure = null; // the abort was relay's: nothing went wrong upstream
  return { copy: joined(parts, size), firstAt, failure, clientGone };
}

function joined(parts, size) {
  const whole = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    whole.set(part, at);
    at += part.byteLength;
  }
  return whole;
}
