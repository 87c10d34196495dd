"""`make bench`: every benchmark, each printing its figures. Not tests: nothing here fails CI."""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = ("bench.detect", "bench.rules_render", "bench.pipeline", "bench.delivery",
              "bench.scale_out", "bench.signal", "bench.groups")


def main() -> int:
    failed = 0
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(name).main()
        except Exception as exc:  # keep going: one broken benchmark should not hide the others
            failed += 1
            print(f"   FAILED: {type(exc).__name__}: {exc}")
        print(f"   ({time.perf_counter() - started:.1f}s)\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
