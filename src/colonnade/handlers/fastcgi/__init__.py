"""FastCGI handler: the FastCGI 1.0 record codec, the connection pool and managed processes."""
