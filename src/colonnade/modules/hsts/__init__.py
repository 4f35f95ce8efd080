"""HSTS and the HTTP to HTTPS redirect: IIS 10's site ``hsts`` settings."""
