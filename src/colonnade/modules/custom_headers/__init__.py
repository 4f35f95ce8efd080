"""Custom response headers: IIS ``httpProtocol/customHeaders``, with set, default and remove."""
