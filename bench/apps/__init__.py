"""Peer apps for the benchmark harness: ``apps.<module>:app`` with bench/ on sys.path."""
