"""HTTP as relay's core sees it, in plain Python: the request and response values the Workers
adapter hands over (`messages`), which header fields cross (`headers`), CORS, event streams
(`sse`), bounded bodies, JSON text with its spans (`json_spans`), how much client text relay keeps
(`text_bounds`), and errors in the client's own API format (`errors`)."""
