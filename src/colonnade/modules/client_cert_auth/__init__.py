"""Client certificate mapping authentication (IIS ``iisClientCertificateMappingAuthentication``)."""
