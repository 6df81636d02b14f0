// What the Workers adapter (entry.py) has JavaScript do for every chunk of a body, and
// around an upstream call. Python woken per chunk, or per step of a stream operation, costs
// the Worker far more CPU than JavaScript doing the same (BENCHMARKS.md): here Python wakes
// once per stream, at its end, and once per upstream call, when its head (and, for a JSON
// answer, its body) has come.
// The decisions stay in Python (relay/pipeline/deliver.py); this module only moves bytes.

/**
 * fetch(url, init), its timer and, for an answer `readsWhole(content-type, content-length,
 * content-encoding)` says is read whole (relay.pipeline.deliver.reads_whole: a synchronous
 * call into Python, not a wake-up), its body read along with its head: Python, which
 * awaits the result, wakes once for both.
 *
 * Returns [answer, whole, failed]: `whole` the body as a Uint8Array when it was read (else
 * null); `failed`, when that read failed (the upstream broke off), a stream that fails as
 * it did, for Python to read in its place (else null). `abort` (an AbortController) is
 * aborted if the head has not come within `timeoutMs` (0: no limit); the body is not timed.
 */
export async function send(url, init, abort, timeoutMs, readsWhole) {
  const timer = timeoutMs > 0 ? setTimeout(() => abort.abort(), timeoutMs) : null;
  let answer;
  try {
    answer = await fetch(url, init);
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
  const head = answer.headers;
  const fields = [head.get("content-type"), head.get("content-length"), head.get("content-encoding")];
  if (answer.body === null || !readsWhole(...fields)) return [answer, null, null];
  try {
    return [answer, new Uint8Array(await answer.arrayBuffer()), null];
  } catch (error) {
    return [answer, null, new ReadableStream({ start: (controller) => controller.error(error) })];
  }
}

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
