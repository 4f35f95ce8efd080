"""What a configuration serves, in a few plain lines: the start-up banner.

``colonnade serve`` logs these lines before it listens, and ``colonnade check``
prints them, so a user sees at once which file (or the embedded default), which
folders and applications, and how the pools' workers start.
"""

from __future__ import annotations

import os

from colonnade.config.schema import ServerConfig
from colonnade.pools.config import site_pools, used_pools


def serving_lines(config: ServerConfig, *, workers: bool) -> list[str]:
    """The lines describing ``config``; ``workers``: the master runs pool workers."""
    embedded = config.source == "<embedded default>"
    lines = [
        "configuration: the embedded default (no colonnade.toml given or found here)"
        if embedded
        else f"configuration: {config.source}"
    ]
    for site in config.sites:
        lines.append(f"site {site.name!r} on {', '.join(site.bindings)}")
        pools = site_pools(site)
        apps = {a.path.rstrip("/") or "/": a for a in site.applications}
        root_app = apps.get("/")
        if root_app is None or root_app.app is None:
            lines.append(f"  /  files from {os.path.abspath(site.root)}")
        for path, app in sorted(apps.items()):
            where = f" (pool {pools[path]!r})" if workers else ""
            if app.app is not None:
                kind = "" if app.interface == "auto" else f" ({app.interface.upper()})"
                lines.append(f"  {path}  application {app.app}{kind}{where}")
            elif path != "/":
                lines.append(f"  {path}  files from {os.path.abspath(app.root or site.root)}")
        for vdir in site.virtual_directories:
            lines.append(f"  {vdir.path}  files from {os.path.abspath(vdir.root)}")
    if workers:
        for name in sorted(used_pools(config)):
            pool = config.pools.get(name)
            if pool is None:
                continue
            count = pool.workers or os.cpu_count() or 1
            when = (
                "started now"
                if pool.start == "always"
                else "started at the pool's first request (--start-workers, or "
                f'[pools.{name}] start = "always", starts them at once)'
            )
            lines.append(f"pool {name!r}: {count} worker(s), {when}")
    return lines
