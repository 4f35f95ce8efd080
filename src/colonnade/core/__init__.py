"""The contracts modules code against."""
