#!/usr/bin/env python3
"""GPUs each policy needs at a target SLO attainment, by simulation: `tessera simulate --target`
searches every policy's planning headroom (plan for rate x h, offer the rate) for the fewest GPUs
whose simulated attainment reaches the target. Writes bench/results/<date>-sim-compare.json.

Workloads are synthetic (docs/PLANNER.md): their profiles are assumptions with H100-like
numbers, not measurements, so these are planner-versus-planner results on one model of a GPU."""
import argparse
import json
import pathlib
import subprocess
import tempfile

import results_file

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(tessera, args):
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "s.json"
        subprocess.run([tessera, "simulate", "--policy", "all", "-q", "--json", str(out), *args],
                       check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tessera", default=str(ROOT / "build" / "bin" / "tessera"))
    ap.add_argument("--target", type=float, default=0.999)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch-buckets", choices=("every", "pow2"), default="every",
                    help="pow2: batches padded to power-of-two executables, as the CPU server "
                         "does today (results go to <date>-sim-compare-pow2.json)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cases = []
    for models, rate, arrival, duration in [(100, 1.5e5, "poisson", 15),
                                            (100, 1.5e5, "gamma", 15),
                                            (400, 4.5e5, "poisson", 8)]:
        for seed in range(1, args.seeds + 1):
            doc = run(args.tessera, ["--synthetic", str(models), "--total-rate", str(rate),
                                     "--arrival", arrival, "--seed", str(seed), "-d",
                                     str(duration), "--warmup", "2", "--target",
                                     str(args.target), "--batch-buckets", args.batch_buckets])
            row = {"models": models, "total_rate_rps": rate, "arrival": arrival, "seed": seed,
                   "duration_s": duration}
            for name, p in doc["policies"].items():
                row[name] = {k: p[k] for k in ("gpus_used", "planning_headroom", "target_met",
                                               "slo_attainment", "goodput_rps", "plan_ms",
                                               "sim_wall_s")}
            t = row["tessera"]["gpus_used"]
            for other in ("nexus", "igniter", "gslice"):
                # A ratio only between plans that both reached the target.
                both = row["tessera"]["target_met"] and row[other]["target_met"]
                row[f"tessera_over_{other}"] = (round(t / row[other]["gpus_used"], 3)
                                                if both else None)
            cases.append(row)
            print(f"{models} models {arrival} seed {seed}: " + ", ".join(
                f"{n} {row[n]['gpus_used']} GPUs (h {row[n]['planning_headroom']:.2f}, "
                f"{100 * row[n]['slo_attainment']:.2f}%)" for n in ("tessera", "nexus", "igniter", "gslice")),
                flush=True)
    result = {"benchmark": "sim-compare", "date": doc["date"], "commit": doc["commit"],
              "machine": doc["machine"], "target_attainment": args.target,
              "batch_buckets": args.batch_buckets,
              "note": "synthetic H100-like profiles; simulated, not measured on a GPU",
              "cases": cases}
    name = "sim-compare" + ("-pow2" if args.batch_buckets == "pow2" else "")
    results_file.write(name, result, args.out)


if __name__ == "__main__":
    main()
