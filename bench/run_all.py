"""Run every benchmark in bench/ one after the other (each writes bench/out/<name>.json).

Speed and memory targets are checked here, never by timed tests.  Each
benchmark measures mxflow and its reference side by side in one run, so the
ratios hold on whatever machine runs them; absolute times do not.

    .venv/bin/python bench/run_all.py [NAME ...]     # names: hitmap process collection merge anomalous electron live shift
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["hitmap", "process", "collection", "merge", "anomalous", "electron", "live", "shift"]


def main(argv: list[str]) -> int:
    names = argv or ORDER
    failed = []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.is_file():
            print(f"no benchmark {script}", file=sys.stderr)
            return 2
        print(f"=== bench_{name} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        print(f"=== bench_{name}: exit {rc} after {time.perf_counter() - t0:.0f} s ===\n")
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
