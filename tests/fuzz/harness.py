"""The fuzz harness: run one target under atheris (coverage-guided), or replay inputs.

A target is a module ``tests/fuzz/fuzz_<name>.py`` with one function,
``one_input(data: bytes) -> None``: it feeds ``data`` to a parser and fails (any
exception escaping it) only when the parser broke its contract: an exception
other than the parser's own error type, or a property check. It does not need
atheris, so the seed corpus is replayed in-process by the pytest suite, and a
crash file by ``python -m tests.fuzz.harness replay TARGET FILE``.

``python -m tests.fuzz.harness run TARGET`` fuzzes one target in this process:
atheris instruments the modules imported after it starts (``colonnade`` and the
libraries the target names in :data:`INSTRUMENT`) and libFuzzer mutates the seed
corpus ``corpus/TARGET/`` (read only) into a working corpus it grows (``--work``).
mypyc-compiled modules are machine code, not bytecode: atheris cannot instrument
them, so in the compiled build those parsers are fuzzed blind (mutations of the
seeds, no coverage feedback from inside them) but still run, and still crash.

``python -m tests.fuzz.harness all`` runs every target in a subprocess of its own
(atheris instruments at import, and libFuzzer ends the process when it is done)
and prints a summary: executions, coverage, crashes. ``make fuzz`` calls it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
REPO = HERE.parent.parent

#: Every target, in the order ``all`` runs them.
TARGETS = (
    "h1",
    "h1_chunked",
    "h1_transport",
    "ranges",
    "conditional",
    "config",
    "web_toml",
    "access_log",
    "fastcgi",
    "cgihead",
    "h2",
    "h2_transport",
    "rewrite",
    "rewrite_compile",
    "forms_ticket",
    "jwt",
    "cookies",
    "proxy_wire",
)

#: Libraries besides colonnade whose code a target's coverage should see.
INSTRUMENT: dict[str, tuple[str, ...]] = {
    "h1": ("httptools",),
    "h1_chunked": ("httptools",),
    "h1_transport": ("httptools",),
    "config": ("tomllib", "msgspec"),
    "web_toml": ("tomllib", "msgspec"),
    "h2": ("h2", "hpack", "hyperframe"),
    "h2_transport": ("h2", "hpack", "hyperframe"),
    "jwt": ("jwt",),
}

#: libFuzzer's final statistics (-print_final_stats=1).
_STAT = re.compile(rb"^stat::(\w+):\s*(\d+)", re.M)
_COVERAGE = re.compile(rb"#\d+\s+\w+\s+cov: (\d+) ft: (\d+)")
_CRASH = re.compile(rb"Test unit written to (\S+)")


#: ``expand``'s marker byte: ``MARK n c`` stands for ``c`` repeated 64 x n times.
MARK = 0xF7


def expand(data: bytes) -> bytes:
    """``data`` with each ``MARK n c`` replaced by ``c`` repeated ``64 * n`` times.

    libFuzzer mutates inputs of a few kilobytes; this lets three bytes stand for
    a run of up to 16 KiB (a number of thousands of digits, a header line at a
    limit), where parsers fail in ways coverage cannot see (``int()`` refuses
    over 4,300 digits, in C).
    """
    if MARK not in data:
        return data
    out = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == MARK and i + 2 < len(data):
            out += bytes((data[i + 2],)) * (64 * data[i + 1])
            i += 3
        else:
            out.append(byte)
            i += 1
    return bytes(out)


def load(target: str) -> Callable[[bytes], None]:
    """The ``one_input`` function of ``target``."""
    if target not in TARGETS:
        raise SystemExit(f"no fuzz target {target!r}; targets: {', '.join(TARGETS)}")
    module = importlib.import_module(f"tests.fuzz.fuzz_{target}")
    one_input: Callable[[bytes], None] = module.one_input
    return one_input


def seeds(target: str) -> list[Path]:
    """The committed seed inputs of ``target``, in name order."""
    return sorted(p for p in (CORPUS / target).iterdir() if p.is_file())


def replay(target: str, files: list[Path] | None = None) -> int:
    """Feed ``files`` (the seeds by default) to ``target`` without atheris; the count."""
    one_input = load(target)
    paths = seeds(target) if files is None else files
    for path in paths:
        try:
            one_input(path.read_bytes())
        except Exception as exc:
            exc.add_note(f"fuzz target {target}, input {path}")
            raise
    return len(paths)


def fuzz(target: str, argv: list[str]) -> None:
    """Fuzz ``target`` in this process with libFuzzer arguments ``argv``; never returns."""
    import atheris  # type: ignore[import-untyped]

    include = ["colonnade", "tests.fuzz", *INSTRUMENT.get(target, ())]
    with atheris.instrument_imports(include=include):
        one_input = load(target)
    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()


class Outcome(NamedTuple):
    """What one target's run did."""

    target: str
    executions: int
    seconds: float
    coverage: int  # libFuzzer's "cov": edges (instrumented code only)
    corpus: int  # inputs in the working corpus afterwards
    crashes: list[str]  # files holding the inputs that failed
    returncode: int


def run_one(
    target: str, *, seconds: int, runs: int, seed: int, work: Path, quiet: bool = True
) -> Outcome:
    """Fuzz ``target`` in a subprocess, bounded by ``seconds`` and ``runs`` (0: none)."""
    corpus = work / target / "corpus"
    crashes = work / target / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    args = [
        str(corpus),  # the first folder gets the new inputs
        str(CORPUS / target),
        f"-seed={seed}",
        "-print_final_stats=1",
        "-max_len=4096",
        "-timeout=20",
        "-rss_limit_mb=1024",
        f"-artifact_prefix={crashes}/",
        f"-max_total_time={seconds}",
    ]
    if runs:
        args.append(f"-runs={runs}")
    # Warnings are errors here as in the test suite: a parser that warns on some
    # input is found too.
    command = [sys.executable, "-W", "error", "-m", "tests.fuzz.harness", "run", target, *args]
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, timeout=seconds + 120, check=False
    )
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    if not quiet or done.returncode:
        sys.stderr.write(output.decode("utf-8", "replace")[-20000:])
    stats = {m.group(1).decode(): int(m.group(2)) for m in _STAT.finditer(output)}
    coverage = [int(m.group(1)) for m in _COVERAGE.finditer(output)]
    found = [m.group(1).decode() for m in _CRASH.finditer(output)]
    return Outcome(
        target,
        stats.get("number_of_executed_units", 0),
        elapsed,
        max(coverage, default=0),
        sum(1 for _ in corpus.iterdir()),
        found,
        done.returncode,
    )


def summary(outcomes: list[Outcome]) -> str:
    """A table of ``outcomes``: one line per target and a total."""
    lines = [
        f"{'target':<16}{'seconds':>8}{'executions':>12}{'exec/s':>8}{'cov':>7}"
        f"{'corpus':>8}  crashes"
    ]
    for o in outcomes:
        rate = o.executions / o.seconds if o.seconds else 0.0
        crashed = ", ".join(o.crashes) or ("none" if o.returncode == 0 else f"exit {o.returncode}")
        lines.append(
            f"{o.target:<16}{o.seconds:>8.0f}{o.executions:>12}{rate:>8.0f}{o.coverage:>7}"
            f"{o.corpus:>8}  {crashed}"
        )
    total = sum(o.executions for o in outcomes)
    failed = sum(1 for o in outcomes if o.returncode)
    lines.append(f"total: {total} executions, {failed} target(s) with a crash")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``run TARGET [libFuzzer args]``, ``replay TARGET [FILE...]`` or ``all``."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"] and len(args) >= 2:
        fuzz(args[1], args[2:])
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.harness")
    sub = parser.add_subparsers(dest="command", required=True)
    again = sub.add_parser("replay", help="feed the seeds (or FILEs) to TARGET, no atheris")
    again.add_argument("target")
    again.add_argument("files", nargs="*", type=Path)
    every = sub.add_parser("all", help="fuzz every target (or --only ones) in turn")
    every.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    every.add_argument("--runs", type=int, default=0, help="stop each target after N inputs")
    every.add_argument("--seed", type=int, default=1)
    every.add_argument("--only", nargs="*", default=list(TARGETS))
    every.add_argument("--work", type=Path, default=None, help="working corpora (kept)")
    opts = parser.parse_args(args)
    if opts.command == "replay":
        count = replay(opts.target, opts.files or None)
        print(f"{opts.target}: {count} input(s), no failure")
        return 0
    work = opts.work or Path(tempfile.mkdtemp(prefix="colonnade-fuzz-"))
    outcomes = []
    for target in opts.only:
        outcome = run_one(target, seconds=opts.seconds, runs=opts.runs, seed=opts.seed, work=work)
        print(summary([outcome]).splitlines()[1], flush=True)
        outcomes.append(outcome)
    print(summary(outcomes))
    print(f"working corpora and crash files: {work}")
    return 1 if any(o.returncode for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
