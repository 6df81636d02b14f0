// The platform floor for bench/: the least a Worker can do in relay's place. It forwards
// method, headers (minus host) and body to UPSTREAM_URL and returns the upstream response
// as it arrives, stream included. No auth, no checks: whatever relay costs above this is
// relay's own code, not workerd's or wrangler dev's.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    headers.delete("host");
    const body = request.method === "GET" || request.method === "HEAD" ? null : request.body;
    return fetch(env.UPSTREAM_URL + url.pathname + url.search, { method: request.method, headers, body });
  },
};
