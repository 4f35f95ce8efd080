"""Backends that modules share (DESIGN.md, "Seams for the module catalogue").

A module codes against a provider's small interface and never parses a store
itself: ``users`` checks passwords against htpasswd files and PAM, for any
scheme that receives a name and a password (Basic, a login form).
"""
