"""Roles from an Apache-format group file (``AuthGroupFile``), added to the authenticated user."""
