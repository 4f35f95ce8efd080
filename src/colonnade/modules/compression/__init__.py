"""Response compression: gzip, brotli and zstd for static files and application output."""
