"""Configuration: schema, strict decoding, the generic merge, loading."""
