"""Handlers: the one component that produces a request's response."""
