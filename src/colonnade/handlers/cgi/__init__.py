"""Running CGI/1.1 (RFC 3875) scripts as a handler: one process per request.

``handler.py`` holds the handler (the process, its streams, the response),
``config.py`` the ``[cgi]`` section (IIS ``system.webServer/cgi`` and
``isapiCgiRestriction``). The variables come from ``colonnade.core.cgienv``, the
response head is read by ``colonnade.core.cgihead``.
"""
