"""Process model: the master (activation service), workers and single-process mode."""
