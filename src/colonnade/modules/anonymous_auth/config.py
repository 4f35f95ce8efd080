"""``[anonymous_authentication]``: whether a request no scheme authenticated is served."""

from __future__ import annotations

from colonnade.config.sections import Section


class AnonymousAuthenticationSection(Section, frozen=True):
    """Anonymous authentication (IIS ``anonymousAuthentication``): a request that no
    authentication scheme authenticated is served as the anonymous user where it is
    enabled, and answered 401.2 where it is not, with one `WWW-Authenticate`
    challenge per authentication scheme enabled for the URL.

    Locked by default, as IIS locks its authentication sections (a folder's owner
    must not be able to open it to everyone): set it in the server file, globally
    or in `[[locations]]`.
    """

    key = "anonymous_authentication"
    locked = True

    enabled: bool = True
    """Serve requests no scheme authenticated (as IIS, on by default). Off: such a
    request is answered 401.2 and the client is asked for credentials."""
