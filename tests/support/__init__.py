"""Helpers shared by tests of every level."""
