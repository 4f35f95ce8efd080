"""SSL settings (IIS ``access@sslFlags``): require HTTPS, accept or require client certificates."""
