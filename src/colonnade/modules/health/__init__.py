"""Liveness and readiness probes answered by the server itself."""
