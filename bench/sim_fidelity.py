#!/usr/bin/env python3
"""Simulator fidelity on this machine: one model (bert_small) served by `tessera serve` on the CPU
engine under Poisson load from `tessera bench`, against `tessera simulate` of the same scenario.
The simulation runs twice, with two profiles of the model (a slice = all cores):
  engine  `tessera profile`: the executable alone, nothing else running;
  served  end-to-end latency of lone requests of each batch size through the server, measured by
          `tessera bench` at a low rate (server overhead and the client's CPU included).
Reports p50, p99 and goodput from the server and both simulations, and their ratios. Writes
bench/results/<date>-sim-fidelity.json.

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
            # The served profile: lone requests of each batch size (rate low enough that they
            # rarely overlap), end to end.
            points = []
            for b in (1, 2, 4, 8):
                out = tmp / "p.json"
                subprocess.run([str(TESSERA), "bench", "-q", "-m", "bert_small", "--batch", str(b),
                                "--rate", str(max(2.0, 16.0 / b)), "--arrival", "constant",
                                "-d", "10", "--warmup", "1", "-u", server.grpc, "--slo-ms",
                                "10000", "--json", str(out)],
                               check=True, capture_output=True, text=True)
                m = json.loads(out.read_text())["run"]["models"][0]
                mean, p99 = m["mean_ms"], max(m["p99_ms"], m["mean_ms"])
                points.append({"sms": cores, "batch": b, "mean_ms": mean,
                               "std_ms": (p99 - mean) / 2.326, "p99_ms": p99})
            served = tmp / "served.json"
            served.write_text(json.dumps({"model": "bert_small", "gpu": "cpu-served",
                                          "gpu_sms": cores, "memory_bytes": 0,
                                          "mem_intensity": 0.3, "points": points}))
            for rate in [float(r) for r in args.rates.split(",")]:
                out = tmp / "b.json"
                subprocess.run([str(TESSERA), "bench", "-q", "-m", "bert_small", "--rate",
                                str(rate), "--slo-ms", str(SLO_MS), "-d", str(args.seconds),
                                "--warmup", "3", "-u", server.grpc, "--json", str(out)],
                               check=True, capture_output=True, text=True)
                meas = json.loads(out.read_text())["run"]["models"][0]
                row = {"rate_rps": rate}
                for label, profile in (("engine", prof), ("served", served)):
                    scen = tmp / "s.json"
                    scen.write_text(json.dumps({
                        "gpu": {"kind": "cpu", "count": 1, "sms": cores,
                                "granularity_sms": cores, "memory_gib": 4},
                        "interference": {"alpha": 0}, "duration_s": args.seconds + 3,
                        "warmup_s": 3,
                        "models": [{"name": "bert_small", "rate": rate, "slo_ms": SLO_MS,
                                    "profile": str(profile)}]}))
                    sim_out = tmp / "sim.json"
                    subprocess.run([str(TESSERA), "simulate", "-s", str(scen), "-q", "--json",
                                    str(sim_out)], check=True, capture_output=True, text=True)
                    sim = json.loads(sim_out.read_text())["policies"]["tessera"]["models"][0]
                    row[label] = {}
                    for k in ("p50_ms", "p99_ms", "goodput_rps"):
                        row[label][k] = {"measured": meas[k], "simulated": sim[k],
                                         "ratio": round(sim[k] / meas[k], 3) if meas[k] else None}
                    print(f"{rate:6.0f} req/s, {label} profile: " + ", ".join(
                        f"{k} measured {row[label][k]['measured']:.2f} simulated "
                        f"{row[label][k]['simulated']:.2f} (x{row[label][k]['ratio']})"
                        for k in ("p50_ms", "p99_ms", "goodput_rps")), flush=True)
                rows.append(row)
        finally:
            server.stop()
        profile = {"engine": json.loads(prof.read_text()),
                   "served": json.loads(served.read_text())}
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
