#!/usr/bin/env python3
"""GPUs each policy needs at a target SLO attainment, by simulation: `tessera simulate --target`
searches every policy's planning headroom (plan for rate x h, offer the rate) for the fewest GPUs
whose simulated attainment reaches the target. Writes bench/results/<date>-sim-compare.json.

Workloads are synthetic (docs/PLANNER.md): their profiles are assumptions with H100-like
numbers, not measurements, so these are planner-versus-planner results on one model of a GPU."""
import argparse
import pathlib

import results_file
from sim_run import simulate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tessera", default=str(ROOT / "build" / "bin" / "tessera"))
    ap.add_argument("--target", type=float, default=0.999)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch-buckets", choices=("every", "pow2"), default="every",
                    help="pow2: batches padded to power-of-two executables, as the CPU server "
                         "does today (results go to <date>-sim-compare-pow2.json)")
    ap.add_argument("--model-floor", type=float, default=0.99,
                    help="every model must also reach this attainment (0: the fleet's only)")
    ap.add_argument("--check-budget", type=float, default=None,
                    help="Tessera's queue-check budget (requests simulated per plan)")
    ap.add_argument("--check-attainment", type=float, default=None,
                    help="Tessera's queue-check target (0: closed-form sizing only)")
    ap.add_argument("--policies", default="all")
    ap.add_argument("--cases", default="poisson100,gamma100,poisson400",
                    help="comma-separated subset of poisson100, gamma100, poisson400")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cases = []
    all_cases = {"poisson100": (100, 1.5e5, "poisson", 15), "gamma100": (100, 1.5e5, "gamma", 15),
                 "poisson400": (400, 4.5e5, "poisson", 8)}
    extra = ["--model-floor", str(args.model_floor)]
    if args.check_budget is not None:
        extra += ["--check-budget", str(args.check_budget)]
    if args.check_attainment is not None:
        extra += ["--check-attainment", str(args.check_attainment)]
    for case in args.cases.split(","):
        models, rate, arrival, duration = all_cases[case]
        for seed in range(1, args.seeds + 1):
            doc = simulate(args.tessera,
                           ["--policy", args.policies, "--synthetic", models, "--total-rate",
                            rate, "--arrival", arrival, "--seed", seed, "-d", duration,
                            "--warmup", 2, "--target", args.target, "--batch-buckets",
                            args.batch_buckets, *extra])
            row = {"models": models, "total_rate_rps": rate, "arrival": arrival, "seed": seed,
                   "duration_s": duration}
            for name, p in doc["policies"].items():
                row[name] = {k: p[k] for k in ("gpus_used", "planning_headroom", "target_met",
                                               "slo_attainment", "goodput_rps", "plan_ms",
                                               "sim_wall_s")}
                counted = [m["slo_attainment"] for m in p["models"] if m["sent"] >= 1000]
                row[name]["min_model_attainment"] = min(counted) if counted else None
            others = [p for p in row if p in ("nexus", "igniter", "gslice")] if "tessera" in row else []
            for other in others:
                # A ratio only between plans that both reached the target.
                both = row["tessera"]["target_met"] and row[other]["target_met"]
                t = row["tessera"]["gpus_used"]
                row[f"tessera_over_{other}"] = (round(t / row[other]["gpus_used"], 3)
                                                if both else None)
            cases.append(row)
            print(f"{models} models {arrival} seed {seed}: " + ", ".join(
                f"{n} {row[n]['gpus_used']} GPUs (h {row[n]['planning_headroom']:.2f}, "
                f"{100 * row[n]['slo_attainment']:.2f}%{'' if row[n]['target_met'] else ', never met'})"
                for n in ("tessera", "nexus", "igniter", "gslice") if n in row),
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
