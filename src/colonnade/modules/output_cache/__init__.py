"""The output cache: ``cache.output`` (IIS HttpCacheModule, the user-mode output cache)."""
