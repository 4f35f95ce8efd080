"""Anonymous authentication: IIS ``anonymousAuthentication``, last in AUTHENTICATE_REQUEST."""
