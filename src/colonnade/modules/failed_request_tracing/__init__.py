"""Failed request tracing: per-request traces kept when a rule's failure definition matches."""
