"""The static file handler: regular files under the application's roots."""
