#!/usr/bin/env python3
"""Planner scale and GPU count: `tessera plan` on synthetic workloads of growing size, every
policy, pinned to one core. Writes bench/results/<date>-plan-scale.json.

The issue's bar: a plan for 1000 GPUs / 5000 model-SLO pairs in under 1 s on one core. The GPU
counts here are *planned* counts; whether each plan holds its SLOs at >= 99.9% attainment is for
the simulator to show (see docs/PLANNER.md)."""
import argparse
import json
import pathlib
import shutil
import subprocess
import tempfile

import results_file

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tessera", default=str(ROOT / "build" / "bin" / "tessera"))
    ap.add_argument("--out", default=None, help="result file (default bench/results/DATE-plan-scale.json)")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    # (models, total req/s): the last is sized so Tessera's plan needs about 1000 GPUs.
    sizes = [(100, 9e4), (1000, 9e5), (5000, 4.5e6)]
    runs = []
    for models, rate in sizes:
        for seed in range(1, args.seeds + 1):
            with tempfile.TemporaryDirectory() as tmp:
                out = pathlib.Path(tmp) / "p.json"
                cmd = pin + [args.tessera, "plan", "--synthetic", str(models), "--total-rate",
                             str(rate), "--seed", str(seed), "--policy", "all", "-q", "--json",
                             str(out)]
                subprocess.run(cmd, check=True, capture_output=True, text=True)
                doc = json.loads(out.read_text())
            row = {"models": models, "total_rate_rps": rate, "seed": seed}
            for name, p in doc["plans"].items():
                row[name] = {"gpus_used": p["gpus_used"], "plan_ms": round(p["plan_ms"], 2),
                             "unplaced": len(p["unplaced"]),
                             "invariants_hold": p["invariants_hold"]}
            t = row["tessera"]["gpus_used"]
            row["tessera_over_nexus"] = round(t / row["nexus"]["gpus_used"], 3)
            row["tessera_over_igniter"] = round(t / row["igniter"]["gpus_used"], 3)
            row["tessera_over_gslice"] = round(t / row["gslice"]["gpus_used"], 3)
            runs.append(row)
            print(f"{models:5d} models seed {seed}: " + ", ".join(
                f"{n} {row[n]['gpus_used']} GPUs in {row[n]['plan_ms']:.0f} ms"
                for n in ("tessera", "nexus", "igniter", "gslice")))
    result = {"benchmark": "plan-scale", "date": doc["date"], "commit": doc["commit"],
              "machine": doc["machine"], "pinned_to_one_core": bool(pin),
              "note": "GPU counts are planned, not simulated; attainment is not checked here",
              "runs": runs}
    results_file.write("plan-scale", result, args.out)


if __name__ == "__main__":
    main()
