"""Directory listing (IIS DirectoryListingModule): ``static.directory_listing``."""
