"""Default document: directory URLs get their index file, or a redirect to add "/"."""
