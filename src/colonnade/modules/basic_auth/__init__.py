"""Basic authentication: IIS ``basicAuthentication`` against htpasswd files and PAM."""
