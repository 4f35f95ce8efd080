"""In-process pipeline cost of trivial modules: µs per request and per module.

    .venv/bin/python bench/pipeline_cost.py [--requests N] [--repeat R] [--json]

(colonnade's own venv, from the repository root; ``bench/run.py`` runs it pinned to the
server CPU as the ``pipeline`` workload.) wrk's requests/s on a 2-core machine cannot
resolve a sub-µs cost; this times the engine alone, without sockets.

Five engines are built with ``colonnade.testing.build_engine``, each serving the folder
of a ``modules-*`` workload (``apps/make_modules.py``) with the default modules minus
the access log (as ``--no-access-log``) plus what its ``web.toml`` enables:

    0             no trivial module installed
    10, 50        that many trivial modules enabled (``apps/trivial_modules.py``: one
                  synchronous do-nothing hook on each of the 12 stages)
    50-disabled   the trivial modules registered (installed) but none enabled
    50-post       50 trivial modules joining the 12 stages and their 11 post stages

Each measurement awaits ``Client.arequest("GET", "/hello.txt")`` N times in a row on the
client's loop (``time.perf_counter``); the variants take turns, R rounds, so slow
drift of the machine hits all alike. Costs are medians over rounds of the paired
difference to variant 0 in the same round: per module = (t_N - t_0) / N.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from apps.make_modules import HELLO, VARIANTS, generate  # noqa: E402
from apps.make_rewrite import COUNT as RULES  # noqa: E402
from apps.make_rewrite import generate as generate_rewrite  # noqa: E402
from apps.make_static import generate as generate_static  # noqa: E402
from apps.trivial_modules import CLASSES, HOOKS, POST_CLASSES  # noqa: E402

from colonnade.config.schema import DEFAULT_MODULES  # noqa: E402
from colonnade.testing import Client, build_engine  # noqa: E402

PATH = "/hello.txt"
#: variant name → folder under bench/out/modules (see apps/make_modules.py)
NAMES: dict[str, str] = {
    "0": "m0",
    "10": "m10",
    "50": "m50",
    "50-disabled": "m50-disabled",
    "50-post": "m50-post",
}
#: And hello.txt behind the rewrite module's 20 rules, none matching (no trivial module):
#: its Δ vs 0 is what the rule set costs (apps/make_rewrite.py; issue #18: < 5 µs).
REWRITE = f"rewrite-{RULES}"


@dataclass
class Variant:
    name: str
    enabled: int
    installed: int
    hooks: int  # per enabled module
    client: Client
    us: list[float] = field(default_factory=list)  # µs per request, one per round


def make_client(folder: Path, installed: int) -> Client:
    config = {
        "server": {"modules": [m for m in DEFAULT_MODULES if m != "log.http"]},
        "sites": [{"name": "bench", "bindings": ["http://127.0.0.1:8080"], "root": str(folder)}],
    }
    modules = CLASSES[:installed] + POST_CLASSES[:installed]
    engine = build_engine(config, base_dir=str(folder), modules=modules)
    return Client(engine)


async def _batch(client: Client, n: int) -> float:
    request = client.arequest
    t0 = time.perf_counter()
    for _ in range(n):
        await request("GET", PATH)
    return time.perf_counter() - t0


def measure(v: Variant, n: int) -> float:
    gc.collect()
    return v.client.loop.run_until_complete(_batch(v.client, n)) / n * 1e6


def run(requests: int, repeat: int, warmup: int) -> dict[str, Any]:
    out = generate()
    folders = {name: out / folder for name, folder in NAMES.items()}
    bench_out = out.parent
    folders[REWRITE] = generate_rewrite(generate_static(bench_out / "www"), bench_out / "rewrite")
    variants: list[Variant] = []
    try:
        for name, folder in folders.items():
            enabled, installed, post = VARIANTS.get(folder.name, (0, 0, False))
            client = make_client(folder, installed).__enter__()
            variants.append(Variant(name, enabled, installed, HOOKS[post], client))
            resp = client.get(PATH)
            if resp.status != 200 or resp.body != HELLO:
                raise SystemExit(f"variant {name}: GET {PATH} answered {resp.status} {resp.body!r}")
            rows = client.engine.runtimes[0].plan.describe()
            trivial = sum(n.startswith("bench.trivial.") for _, names in rows for n in names)
            if trivial != enabled * HOOKS[post]:
                raise SystemExit(f"variant {name}: {trivial} trivial hooks in the plan")
            if (name == REWRITE) != any(n.startswith("rewrite ") for _, ns in rows for n in ns):
                raise SystemExit(f"variant {name}: the rewrite module is (not) in the plan")
        for v in variants:
            measure(v, warmup)
        for _ in range(repeat):
            for v in variants:
                v.us.append(measure(v, requests))
    finally:
        for v in variants:
            v.client.__exit__(None, None, None)
    base = variants[0]
    result: dict[str, Any] = {
        "requests": requests,
        "repeat": repeat,
        "hooks_per_module": HOOKS[False],
        "hooks_per_post_module": HOOKS[True],
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "variants": {},
    }
    for v in variants:
        deltas = [a - b for a, b in zip(v.us, base.us, strict=True)]
        row: dict[str, Any] = {
            "enabled": v.enabled,
            "installed": v.installed,
            "us": v.us,
            "median_us": statistics.median(v.us),
            "min_us": min(v.us),
            "delta_us": statistics.median(deltas),
            "delta_spread_us": (min(deltas), max(deltas)),
        }
        if v.enabled:
            per = [d / v.enabled for d in deltas]
            row["per_module_us"] = statistics.median(per)
            row["per_module_spread_us"] = (min(per), max(per))
            row["hooks"] = v.hooks
            row["per_hook_ns"] = statistics.median(per) / v.hooks * 1e3
        result["variants"][v.name] = row
    # The noise floor: how much two rounds of variant 0 differ (median |Δ| of neighbours).
    pairs = [abs(a - b) for a, b in zip(base.us, base.us[1:], strict=False)]
    result["noise_us"] = statistics.median(pairs) if pairs else None
    return result


def render(r: dict[str, Any]) -> str:
    lines = [
        f"in-process, {r['requests']:,} requests x {r['repeat']} rounds per variant, "
        f"{r['implementation']} {r['python']}; {r['hooks_per_module']} hooks per module "
        f"({r['hooks_per_post_module']} for 50-post)",
        "",
        f"{'variant':<14}{'µs/request':>12}{'Δ vs 0 (µs)':>14}{'µs/module':>12}"
        f"{'ns/hook':>10}   range of µs/module (or Δ) over rounds",
    ]
    for name, v in r["variants"].items():
        per = "" if v.get("per_module_us") is None else f"{v['per_module_us']:.3f}"
        hook = "" if v.get("per_hook_ns") is None else f"{v['per_hook_ns']:.0f}"
        lo, hi = v.get("per_module_spread_us") or v["delta_spread_us"]
        lines.append(
            f"{name:<14}{v['median_us']:>12.2f}{v['delta_us']:>14.2f}{per:>12}{hook:>10}"
            f"   {lo:.3f} … {hi:.3f}"
        )
    if r.get("noise_us") is not None:
        lines.append(f"noise: consecutive rounds of variant 0 differ by {r['noise_us']:.2f} µs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000, help="requests per round")
    ap.add_argument("--repeat", type=int, default=7, help="rounds per variant")
    ap.add_argument("--warmup", type=int, default=2000, help="requests before the rounds")
    ap.add_argument("--json", action="store_true", help="print JSON (for bench/run.py)")
    args = ap.parse_args(argv)
    if args.requests < 1 or args.repeat < 1:
        ap.error("--requests and --repeat must be >= 1")
    result = run(args.requests, args.repeat, args.warmup)
    print(json.dumps(result) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
