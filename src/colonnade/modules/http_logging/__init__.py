"""The access log: W3C extended (IIS's default) or JSON lines, buffered."""
