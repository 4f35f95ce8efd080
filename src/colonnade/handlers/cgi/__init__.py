"""Running CGI/1.1 (RFC 3875) scripts as a handler: one process per request.

``handler.py`` holds the handler (the request, the response, the timeout),
``process.py`` the script's process on the event loop (pipes, exit, kill),
``config.py`` the ``[cgi]`` section (IIS ``system.webServer/cgi`` and
``isapiCgiRestriction``). The variables come from ``colonnade.core.cgienv``, the
response head is read by ``colonnade.core.cgihead``.
"""
