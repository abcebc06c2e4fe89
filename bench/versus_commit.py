"""This tree against an older commit, side by side in the same run: engine overhead and HTTP fan-out.

Issue 15 moved most of the package; its bar is that the engine's overhead and the HTTP fan-out are no worse than
before. Each commit is measured by its own benchmark scripts (``bench/engine_overhead.py --case ...`` and
``bench/http_fanout.py``), run from an export of that commit (``git archive``) with its own package on
``PYTHONPATH``, so each side runs exactly the code of its commit. The two sides alternate, case by case and
round by round, so a slow spell of a shared machine weighs on both alike; the figures are medians over every
run, and the ratio is new over old (below 1.00: faster now).

Run: ``python bench/versus_commit.py [--commit 8818243] [--rounds 5]`` from a git checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE_CASES = [("fanout", 100), ("fanout", 1000), ("fanout", 10000), ("chain", 10)]
HTTP_ROW = re.compile(r"^(json|stream)\s*\|\s*(\d+)\s*\|(.*)$")
HTTP_CELL = re.compile(r"([\d.]+) ms \(\s*([\d.]+)x\)")


def export(commit: str, into: Path) -> Path:
    data = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_engine(tree: Path, kind: str, n: int, repeat: int) -> list[float]:
    out = subprocess.run(
        [
            sys.executable,
            str(tree / "bench" / "engine_overhead.py"),
            "--case",
            kind,
            "--n",
            str(n),
            "--repeat",
            str(repeat),
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,
    )
    walls: list[float] = json.loads(out.stdout)["walls"]
    return walls


def run_http(tree: Path, levels: str) -> dict[tuple[str, int], dict[str, float]]:
    """Each row's ratios to raw aiohttp, by client, from one run of the commit's own HTTP benchmark."""
    out = subprocess.run(
        [sys.executable, str(tree / "bench" / "http_fanout.py"), "--levels", levels, "--rounds", "1"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
        cwd=tree,
        timeout=600,
    )
    lines = out.stdout.splitlines()
    header = next(line for line in lines if line.startswith("mode"))
    names = [name.strip() for name in header.split("|")[2:]]
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for line in lines:
        match = HTTP_ROW.match(line)
        if match is None:
            continue
        cells = [HTTP_CELL.search(cell) for cell in match.group(3).split("|")]
        rows[(match.group(1), int(match.group(2)))] = {
            name: float(cell.group(2)) for name, cell in zip(names, cells, strict=True) if cell is not None
        }
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commit", default="8818243", help="the older commit (default: before issue 15)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each engine case per process")
    parser.add_argument("--http-levels", default="100,1000", help="'' to skip the HTTP fan-out")
    parser.add_argument("--cases", default="", help="engine cases as kind:n,... (default: all)")
    args = parser.parse_args()
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",") if c] or ENGINE_CASES
    with tempfile.TemporaryDirectory() as tmp:
        old = export(args.commit, Path(tmp) / "old")
        new = export("HEAD", Path(tmp) / "new") if not _dirty() else ROOT
        sides = {"old": old, "new": new}
        engine: dict[tuple[str, str, int], list[float]] = {}
        http: dict[str, list[dict[tuple[str, int], dict[str, float]]]] = {"old": [], "new": []}
        for r in range(args.rounds):
            for kind, n in cases:
                for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    engine.setdefault((side, kind, n), []).extend(run_engine(sides[side], kind, n, args.repeat))
            if args.http_levels:
                for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    http[side].append(run_http(sides[side], args.http_levels))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(
        f"{args.commit} (old) against {'HEAD' if not _dirty() else 'the working tree'} (new), "
        f"{args.rounds} interleaved rounds, medians"
    )
    print("| case | old s | new s | new/old |")
    print("|---|---:|---:|---:|")
    for kind, n in cases:
        a = statistics.median(engine[("old", kind, n)])
        b = statistics.median(engine[("new", kind, n)])
        print(f"| {kind} {n} | {a:.3f} | {b:.3f} | {b / a:.2f} |")
    if args.http_levels:
        print()
        print("| HTTP row | client | old x raw aiohttp | new x raw aiohttp |")
        print("|---|---|---:|---:|")
        for key in http["old"][0]:
            for client in ("runner provider", "runner workflow"):
                olds = [run[key][client] for run in http["old"] if client in run.get(key, {})]
                news = [run[key][client] for run in http["new"] if client in run.get(key, {})]
                if olds and news:
                    print(
                        f"| {key[0]} {key[1]} | {client} | {statistics.median(olds):.2f} | "
                        f"{statistics.median(news):.2f} |"
                    )
    return 0


def _dirty() -> bool:
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return bool(status.strip())


if __name__ == "__main__":
    sys.exit(main())
