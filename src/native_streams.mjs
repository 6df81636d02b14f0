// What the Workers adapter (entry.py) has JavaScript do around an upstream call and its
// body's stream. Python woken per chunk, or per step of a stream operation, costs the Worker
// far more CPU than JavaScript doing the same, and JavaScript awaiting each chunk far more
// than the runtime's own pipes (BENCHMARKS.md): here the runtime moves a stream's chunks,
// Python is called once per stream, at its end, and wakes once per upstream call, when its
// head (and, for a JSON answer, its body) has come.
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
 * Returns [client, ended]: the stream for the client's Response, and a promise of
 * {copy: Uint8Array, firstAt: ms since the epoch or null, failure: error name or null,
 * clientGone: boolean}. No JavaScript runs per chunk (an await of each chunk in JavaScript
 * cost a Python Worker about 0.8 CPU ms, BENCHMARKS.md): a tee's branches are piped by the
 * runtime, one to the client, one into `kept`, read whole; JavaScript reads only the first
 * chunk, for the time it came. When the client has gone, `abort` (the upstream call's) is
 * called, so the provider stops generating for nobody, and the copy keeps what had come
 * until it took effect (the copy's pipe is told not to pass the failure on, and `kept` is
 * closed instead); when the upstream breaks off, the client's stream fails with its error.
 */
export function observe(source, abort) {
  const [toClient, toCopy] = source.tee();
  const pipe = new IdentityTransformStream();
  const gone = { client: false };
  toClient.pipeTo(pipe.writable).catch(() => {
    gone.client = true; // or the upstream broke off: then the abort changes nothing
    abort();
  });
  return [pipe.readable, copy(toCopy, gone)];
}

async function copy(branch, gone) {
  const reader = branch.getReader();
  let first;
  try {
    first = await reader.read();
  } catch (error) {
    return ended(new Uint8Array(0), null, error, gone);
  }
  if (first.done) return ended(new Uint8Array(0), null, null, gone);
  const firstAt = Date.now();
  reader.releaseLock();
  const kept = new IdentityTransformStream();
  const whole = new Response(kept.readable).arrayBuffer();
  let failure = null;
  try {
    const writer = kept.writable.getWriter();
    await writer.write(first.value);
    writer.releaseLock();
    try {
      await branch.pipeTo(kept.writable, { preventAbort: true });
    } catch (error) {
      failure = error; // the upstream broke off, or relay aborted it: keep what came
      await kept.writable.close();
    }
    return ended(new Uint8Array(await whole), firstAt, failure, gone);
  } catch (error) {
    whole.catch(() => {}); // its failure, if any, is this one's: not left for the runtime to report
    return ended(first.value, firstAt, error, gone);
  }
}

function ended(copy, firstAt, error, gone) {
  const name = error ? error.name || "Error" : null;
  // Ended by relay's abort (the client had gone), not by the upstream.
  const clientGone = gone.client && (name === null || name === "AbortError");
  return { copy, firstAt, failure: clientGone ? null : name, clientGone };
}
