"""The chaos suite's and the soak's own code (bench/reliability), importable here."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "reliability"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
