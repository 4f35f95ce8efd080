"""Negotiate authentication: Kerberos via SPNEGO and GSSAPI, IIS ``windowsAuthentication``."""
