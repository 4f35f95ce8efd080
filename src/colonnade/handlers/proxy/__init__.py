"""``handler.proxy``: a reverse proxy to HTTP/1.1 upstreams (IIS ARR's forwarder)."""
