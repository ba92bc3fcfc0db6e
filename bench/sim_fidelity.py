#!/usr/bin/env python3
"""Simulator fidelity on this machine: one model (bert_small) served by `tessera serve` on the CPU
engine under Poisson load from `tessera bench`, against `tessera simulate` of the same scenario
with the model's measured `tessera profile` (a slice = all cores). Reports p50, p99 and goodput
from both and their ratios. Writes bench/results/<date>-sim-fidelity.json.

The planner issue's bar: simulated and measured latency and goodput agree within 10%."""
import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from server_util import TESSERA, TesseraServer, write_zoo  # noqa: E402

SLO_MS = 200


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="30,60,90", help="req/s to compare at")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        repo = write_zoo(tmp / "repo", "bert_small")
        cfg = repo / "bert_small" / "config.pbtxt"
        cfg.write_text(cfg.read_text() +
                       f'parameters {{ key: "slo_ms" value {{ string_value: "{SLO_MS}" }} }}\n')
        prof = tmp / "bert_small.json"
        subprocess.run([str(TESSERA), "profile", "--model-repository", str(repo), "-m",
                        "bert_small", "--batches", "1,2,4,8", "--slices", str(cores), "-n", "30",
                        "--warmup", "5", "-q", "-o", str(prof)], check=True)
        server = TesseraServer(repo)
        rows = []
        try:
            for rate in [float(r) for r in args.rates.split(",")]:
                out = tmp / "b.json"
                subprocess.run([str(TESSERA), "bench", "-q", "-m", "bert_small", "--rate",
                                str(rate), "--slo-ms", str(SLO_MS), "-d", str(args.seconds),
                                "--warmup", "3", "-u", server.grpc, "--json", str(out)],
                               check=True, capture_output=True, text=True)
                meas = json.loads(out.read_text())["run"]["models"][0]
                scen = tmp / "s.json"
                scen.write_text(json.dumps({
                    "gpu": {"kind": "cpu", "count": 1, "sms": cores, "granularity_sms": cores,
                            "memory_gib": 4},
                    "interference": {"alpha": 0}, "duration_s": args.seconds + 3,
                    "warmup_s": 3,
                    "models": [{"name": "bert_small", "rate": rate, "slo_ms": SLO_MS,
                                "profile": str(prof)}]}))
                sim_out = tmp / "sim.json"
                subprocess.run([str(TESSERA), "simulate", "-s", str(scen), "-q", "--json",
                                str(sim_out)], check=True, capture_output=True, text=True)
                sim = json.loads(sim_out.read_text())["policies"]["tessera"]["models"][0]
                row = {"rate_rps": rate}
                for k in ("p50_ms", "p99_ms", "goodput_rps"):
                    row[k] = {"measured": meas[k], "simulated": sim[k],
                              "ratio": round(sim[k] / meas[k], 3) if meas[k] else None}
                rows.append(row)
                print(f"{rate:6.0f} req/s: " + ", ".join(
                    f"{k} measured {row[k]['measured']:.2f} simulated {row[k]['simulated']:.2f} "
                    f"(x{row[k]['ratio']})" for k in ("p50_ms", "p99_ms", "goodput_rps")),
                    flush=True)
        finally:
            server.stop()
        profile = json.loads(prof.read_text())
    date = datetime.date.today().isoformat()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    result = {"benchmark": "sim-fidelity", "date": date, "commit": commit,
              "machine": {"cores": cores, "cpu": open("/proc/cpuinfo").read().split(
                  "model name")[1].split("\n")[0].strip(": ")},
              "model": "bert_small", "slo_ms": SLO_MS, "profile": profile, "runs": rows}
    out = pathlib.Path(args.out or ROOT / "bench" / "results" / f"{date}-sim-fidelity.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
