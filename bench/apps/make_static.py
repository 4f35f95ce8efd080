"""Generate the static docroot for the static-file workloads.

    python bench/apps/make_static.py [DOCROOT]      (default: bench/out/www)

Files (incompressible random bytes, so compression never skews a result):
    1k.bin    1 KiB
    100k.bin  100 KiB
    10m.bin   10 MiB
    100m.bin  100 MiB (the proxy-100m download)
    hello.txt "Hello, world!" (13 bytes)
Idempotent: a file of the right size is left alone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_ROOT = Path(__file__).resolve().parent.parent / "out" / "www"

FILES: dict[str, int] = {
    "1k.bin": 1024,
    "100k.bin": 100 * 1024,
    "10m.bin": 10 * 1024 * 1024,
    "100m.bin": 100 * 1024 * 1024,
}
HELLO = b"Hello, world!"


def generate(root: Path = DEFAULT_ROOT) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, size in FILES.items():
        path = root / name
        if path.is_file() and path.stat().st_size == size:
            continue
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(os.urandom(size))
        tmp.replace(path)
    hello = root / "hello.txt"
    if not hello.is_file() or hello.read_bytes() != HELLO:
        hello.write_bytes(HELLO)
    return root


if __name__ == "__main__":
    out = generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ROOT)
    print(out)
