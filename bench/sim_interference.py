#!/usr/bin/env python3
"""Interference calibrated from live statistics, by simulation: the simulated GPU interferes
with alpha A (`tessera simulate --actual-alpha A`) while the planner and the tuner are told the
scenario's alpha (0.6). Records what the windows' slice samples fit (live_alpha), its prediction
error against the told alpha's, the static plan's attainment, and the tuner with and without
predicting by the live fit (`--learn-interference-after`). Writes
bench/results/<date>-sim-interference.json.

Profiles are synthetic (docs/PLANNER.md): simulated slices, not GPU measurements."""
import argparse
import pathlib

import results_file
from sim_run import simulate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tessera", default=str(ROOT / "build" / "bin" / "tessera"))
    ap.add_argument("--alphas", default="0.2,0.6,1.2,2.5")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    base = ["--synthetic", "100", "--total-rate", "1.5e5", "--seed", "1", "-d",
            str(args.seconds), "--warmup", "5"]
    doc = {"benchmark": "sim-interference", "workload": "100 synthetic models, Poisson, seed 1",
           "seconds": args.seconds, "runs": []}
    first = None
    for a in args.alphas.split(","):
        row = {"actual_alpha": float(a)}
        for label, extra in (("static", []), ("tuned", ["--tune"]),
                             ("tuned_learning", ["--tune", "--learn-interference-after", "200"])):
            r = simulate(args.tessera, [*base, "--actual-alpha", a, *extra])
            first = first or r
            p = r["policies"]["tessera"]
            row[label] = {k: p[k] for k in ("gpus_used", "planned_gpus", "mean_gpus",
                                            "slo_attainment", "resizes", "replicas_added",
                                            "replicas_removed", "interference")}
            fit = p["interference"]
            print(f"actual alpha {a} {label:15} {p['gpus_used']:3} GPUs (mean "
                  f"{p['mean_gpus']:.1f}), attainment {100 * p['slo_attainment']:.3f}%; live "
                  f"alpha {fit['live_alpha']:.3f} from {fit['live_samples']} samples, error "
                  f"{100 * fit['live_fit_error']['mean_abs_rel']:.2f}% (told "
                  f"{fit['planner_alpha']}: {100 * fit['planner_error']['mean_abs_rel']:.2f}%)",
                  flush=True)
        doc["runs"].append(row)
    for k in ("date", "commit", "machine"):
        doc[k] = first[k]
    results_file.write("sim-interference", doc, args.out)


if __name__ == "__main__":
    main()
