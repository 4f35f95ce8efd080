"""Trusted proxies: the client address, scheme and host from a trusted reverse proxy."""
