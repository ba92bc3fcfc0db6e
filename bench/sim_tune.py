#!/usr/bin/env python3
"""Online tuning, by simulation: Tessera's tuner and GSLICE's self-tuning against static plans
when the load moves. Writes bench/results/<date>-sim-tune.json.

Cases:
  diurnal-8     bench/sim/diurnal-8.json: 8 models whose rates swing +-60% on phase-shifted
                120 s cycles; every policy at its best planning headroom for 99.9% attainment
                (`--target`), Tessera both static and tuned.
  synthetic     100 synthetic models, diurnal (600 s cycles, amplitude 0.5, spread phases),
                300 s; Tessera static vs tuned at 99.9%.
  diurnal-8-inphase  the same with every model peaking at once.
                Both diurnal-8 cases also run the tuner with learned capacity trust (max_trust 1.3).
  surprise      the mixed-8 example planned for its rates, offered 1.3x and 0.6x them: static vs
                tuned, no headroom search (what an operator gets when the forecast is wrong).
Profiles are synthetic (docs/PLANNER.md), so these are simulated results, not GPU measurements."""
import argparse
import json
import pathlib
import tempfile

import results_file
from sim_run import simulate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def summary(p):
    keys = ("gpus_used", "planned_gpus", "mean_gpus", "slo_attainment", "goodput_rps",
            "planning_headroom", "target_met", "resizes", "replicas_added", "replicas_removed",
            "sim_wall_s")
    return {k: p[k] for k in keys if k in p}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tessera", default=str(ROOT / "build" / "bin" / "tessera"))
    ap.add_argument("--target", type=float, default=0.999)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    t = args.tessera
    target = ["--target", str(args.target)]
    doc = {"benchmark": "sim-tune", "target_attainment": args.target, "cases": {}}
    first = None

    def record(case, label, result, policy):
        nonlocal first
        first = first or result
        doc["cases"].setdefault(case, {})[label] = summary(result["policies"][policy])
        print(case, label, json.dumps(doc["cases"][case][label]), flush=True)

    tmp = tempfile.TemporaryDirectory()
    base = json.loads((ROOT / "bench" / "sim" / "diurnal-8.json").read_text())
    for case, phases in (("diurnal-8", True), ("diurnal-8-inphase", False)):
        variants = {}
        for trust in (None, 1.3):
            d = json.loads(json.dumps(base))
            if not phases:
                for m in d["models"]:
                    m["diurnal_phase"] = 0
            if trust:
                d["tune"] = {"enabled": True, "max_trust": trust}
            path = pathlib.Path(tmp.name) / f"{case}-{trust}.json"
            path.write_text(json.dumps(d))
            variants[trust] = str(path)
        r = simulate(t, ["-s", variants[None], "-p", "all", *target])
        for p in ("tessera", "nexus", "igniter", "gslice"):
            record(case, p if p != "tessera" else "tessera_static", r, p)
        record(case, "tessera_tuned",
               simulate(t, ["-s", variants[None], "-p", "tessera", "--tune", *target]), "tessera")
        record(case, "tessera_tuned_trust_1.3",
               simulate(t, ["-s", variants[1.3], "-p", "tessera", *target]), "tessera")

    synth = ["--synthetic", "100", "--arrival", "diurnal", "-d", "300", "--warmup", "10"]
    record("synthetic-100-diurnal", "tessera_static", simulate(t, [*synth, *target]), "tessera")
    record("synthetic-100-diurnal", "tessera_tuned",
           simulate(t, [*synth, "--tune", *target]), "tessera")
    record("synthetic-100-diurnal", "tessera_tuned_trust_1.3",
           simulate(t, [*synth, "--tune", "--max-trust", "1.3", *target]), "tessera")

    mixed = str(ROOT / "bench" / "sim" / "mixed-8.json")
    for load in ("1.3", "0.6"):
        for tune in ([], ["--tune"]):
            r = simulate(t, ["-s", mixed, "-p", "tessera", "--load", load, "-d", "120", *tune])
            record(f"surprise-load-{load}", "tessera_tuned" if tune else "tessera_static", r,
                   "tessera")
    for k in ("date", "commit", "machine"):
        doc[k] = first[k]
    results_file.write("sim-tune", doc, args.out)


if __name__ == "__main__":
    main()
