"""``[cgi]``: which programs may run as CGI scripts, and how long.

IIS keeps two sections: ``system.webServer/cgi`` (``timeout``, locked by default)
and the server-only ``isapiCgiRestriction`` list, whose keys here are
``allowed_programs`` and ``not_listed_allowed``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from functools import cached_property
from typing import Annotated

from msgspec import Meta

from colonnade.config.schema import Seconds
from colonnade.config.sections import Section, Where

#: An absolute path or glob of executables (``*`` matches across ``/`` too).
ProgramPattern = Annotated[
    str,
    Meta(
        pattern=r"^/[^\x00]*$",
        description="an absolute path or glob of executables, such as '/srv/www/cgi-bin/*'",
    ),
]
#: An environment variable's name.
EnvName = Annotated[
    str,
    Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="an environment variable name"),
]
#: A value that can be put in an environment (no NUL).
EnvValue = Annotated[
    str,
    Meta(pattern=r"^[^\x00]*$", max_length=32768, description="a string without NUL characters"),
]


class CgiSection(Section, frozen=True):
    """CGI scripts: the restriction list, the timeout, the scripts' environment.

    A script runs only if its real path (symlinks resolved) is on ``allowed_programs`` or
    ``not_listed_allowed`` is true; else the answer is 404.2, as IIS's
    ``isapiCgiRestriction`` answers. Map the scripts to ``handler.cgi`` with a
    ``[[handlers]]`` entry (``resource_type = "file"`` for ``*.cgi``, or a
    ``/cgi-bin/*`` prefix for scripts with path info).
    """

    key = "cgi"
    # IIS locks system.webServer/cgi (overrideModeDefault="Deny"); the
    # restriction list is applicationHost-only.
    locked = True
    allowed_keys = {"allowed_programs": Where.SERVER, "not_listed_allowed": Where.SERVER}

    allowed_programs: list[ProgramPattern] = []
    """Programs that may run as CGI scripts: absolute paths or globs (``*`` also
    matches ``/``), compared with the script's real path (IIS
    ``isapiCgiRestriction``). Set at the server level only."""
    not_listed_allowed: bool = False
    """Let every script the mapping reaches run, listed or not (IIS
    ``notListedCgisAllowed``). Set at the server level only."""
    timeout: Seconds = 900.0
    """How long a script may run, in seconds, from its start to the end of its
    response (IIS ``cgi/timeout``, 15 minutes). Then its whole process group is
    killed: 502.1 if nothing was sent yet, else the connection is dropped."""
    kill_grace: Annotated[float, Meta(ge=0, le=60)] = 2.0
    """Seconds between SIGTERM and SIGKILL when a script's process group is killed."""
    path: EnvValue = "/usr/local/bin:/usr/bin:/bin"
    """``PATH`` in the scripts' environment (which holds the CGI variables, this
    and ``environment``; nothing of the server's own environment)."""
    environment: dict[EnvName, EnvValue] = {}
    """More environment variables for the scripts (a CGI variable of the same
    name wins)."""
    max_stderr_log: Annotated[int, Meta(ge=0, le=16 * 1024 * 1024)] = 65536
    """Bytes of a script's standard error logged per request (as warnings, line by
    line); the rest is read and dropped, with one line saying how much."""

    @cached_property
    def allowed_re(self) -> re.Pattern[str] | None:
        """``allowed_programs`` as one regular expression (None: an empty list)."""
        if not self.allowed_programs:
            return None
        patterns = (fnmatch.translate(os.path.normpath(p)) for p in self.allowed_programs)
        return re.compile("|".join(patterns))

    def allows(self, real_path: str) -> bool:
        """True if the program at ``real_path`` may run."""
        if self.not_listed_allowed:
            return True
        pattern = self.allowed_re
        return pattern is not None and pattern.match(real_path) is not None
