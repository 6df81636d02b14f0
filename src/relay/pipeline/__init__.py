"""The request pipeline, in the order a request meets it: `app.handle` (CORS, endpoint, caller,
body checks, markers, then the providers), `endpoints` (which surface and upstream path a URL
path is), `session` (the client session a request belongs to) and `deliver` (how the answer's
body reaches the client while the usage meter reads it)."""
