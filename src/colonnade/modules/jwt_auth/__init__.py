"""Bearer token authentication with signed JWTs (RFC 6750, RFC 7519): ``auth.jwt``."""
