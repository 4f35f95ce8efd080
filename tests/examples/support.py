"""Copies of the examples in examples/, prepared as their READMEs say."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"


def copy_example(name: str, parent: Path) -> Path:
    """A copy of ``examples/NAME`` in ``parent``, without what running it makes
    (so that a test writes nothing into the repository)."""
    tree = parent / name
    shutil.copytree(
        EXAMPLES / name,
        tree,
        ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3", "staticfiles"),
    )
    return tree


def collectstatic(tree: Path) -> None:
    """``python manage.py collectstatic --noinput`` in a copy of the Django example,
    with its own settings (none of the tests' ``DJANGO_*`` variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tree / "staticfiles" / "admin" / "css" / "base.css").is_file()
