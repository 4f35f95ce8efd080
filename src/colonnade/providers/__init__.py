"""Backends that modules share (counters, stores): memory and Redis implementations.

Modules and handlers import from here; nothing here imports a module.
"""
