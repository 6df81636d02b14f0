"""The "Python floor" of bench/: the least a Python Worker can do in relay's place. It
forwards method, headers (minus host) and body to UPSTREAM_URL and returns the upstream
response as it arrives, stream included, like the JS floor (bench/passthrough/): whatever
it costs above that is what running Python (Pyodide) in workerd costs, before any of
relay's code."""

from js import URL, Headers, Object, Response, fetch
from pyodide.ffi import to_js
from workers import WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        request = request.js_object
        url = URL.new(request.url)
        headers = Headers.new(request.headers)
        headers.delete("host")
        init = {"method": request.method, "headers": headers}
        if request.method not in ("GET", "HEAD"):
            init["body"] = request.body
        answer = await fetch(
            self.env.UPSTREAM_URL + url.pathname + url.search, to_js(init, dict_converter=Object.fromEntries)
        )
        return Response.new(answer.body, status=answer.status, headers=answer.headers)
