"""URL Rewrite (IIS URL Rewrite 2): global and distributed rules, conditions, maps."""
