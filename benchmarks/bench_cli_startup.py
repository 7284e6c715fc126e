"""Start-up time of ``vitfas --help`` / ``--version`` as a ratio to a bare interpreter.

Each command runs in a fresh interpreter ``--repeat`` times; the median wall time is
compared with the median of ``python -c pass`` measured in the same run, so the ratio does
not depend on the machine. The verbs' modules (and torch) are imported only when a verb
runs, so ``--help`` should cost a few bare interpreter starts, not a torch import.

    python benchmarks/bench_cli_startup.py            # prints a JSON summary
    python benchmarks/bench_cli_startup.py --repeat 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _median_seconds(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    bare = _median_seconds([sys.executable, "-c", "pass"], args.repeat)
    out = {"python -c pass (s)": round(bare, 4)}
    for cmd in (["--help"], ["--version"], ["info", "--help"]):
        t = _median_seconds([sys.executable, "-m", "vitfas", *cmd], args.repeat)
        label = "vitfas " + " ".join(cmd)
        out[f"{label} (s)"] = round(t, 4)
        out[f"{label} / bare"] = round(t / bare, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
