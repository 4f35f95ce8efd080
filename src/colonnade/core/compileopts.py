"""``mypyc_attr``, mypyc's per-class options, without mypy_extensions at run time.

mypyc reads the decorator when it compiles a class (from the ``TYPE_CHECKING``
branch, the one mypy takes) and never calls it on a compiled class; an
interpreted class needs nothing of it. So no process imports mypy_extensions
(~60 KiB of a worker's Python objects) for it. This module stays interpreted: in a
compiled one, mypyc would compile the ``else`` branch, unreachable for mypy, into
an error raised at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*attrs, **kwattrs):
        """Nothing at run time (see the module's docstring)."""
        return lambda cls: cls
