#!/usr/bin/env python3
"""The load generator's own quality bars (not a test):

1. Capacity: the highest constant rate `tessera bench` keeps on ONE core (taskset) against
   `tessera sink` (a KServe endpoint that answers at once, on the other core), per protocol.
   A rate is kept when every request is answered, the median request left the generator within
   1 ms of its due time and was answered within --keep-p50-ms (no backlog builds up: the
   generator keeps its schedule). p99s are recorded too; on a shared VM they are noisy.
2. Cross-check: single-model constant-rate runs on a real `tessera serve`, measured by
   `tessera bench` and by perf_analyzer (--request-rate-range, constant distribution) in
   alternating rounds; the medians of their p50s should agree within 10%. mobilenet_v2 (the
   server's work dominates) is the check; tiny_mlp (the clients' own overhead dominates) is
   recorded beside it.

Results: bench/results/<date>-loadgen.json with machine, commit and date.

  .venv/bin/python bench/loadgen_check.py [--rates 10000,20000,30000] [--check mobilenet_v2:20]
                                          [--check-rounds 4] [--skip-capacity]
"""
import argparse
import csv
import datetime
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import results_file  # noqa: E402  (bench/, the script's own folder)

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from server_util import TESSERA, TesseraServer  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_bench(args, cpu=None):
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "r.json"
        cmd = [str(TESSERA), "bench", "-q", *map(str, args), "--json", str(out)]
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu)] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            sys.exit(f"tessera bench failed: {p.stdout}{p.stderr}")
        return json.loads(out.read_text())["run"]["models"][0]


def capacity(rates, seconds, keep_p50_ms):
    cores = os.cpu_count() or 1
    gen_cpu, sink_cpu = 0, (1 if cores > 1 else 0)
    out = {"generator_cpu": gen_cpu, "sink_cpu": sink_cpu, "keep_p50_ms": keep_p50_ms,
           "fresh_sink_per_step": True, "protocols": {}}
    for label, proto, extra in (("http", "http", []), ("grpc", "grpc", []),
                                ("grpc-stream", "grpc", ["--grpc-stream"])):
        steps, kept = [], 0
        for rate in rates:
            # A fresh sink for every step: an overloaded step leaves a backlog in the sink that
            # would otherwise be charged to the next one.
            hp, gp = free_port(), free_port()
            sink_cmd = [str(TESSERA), "sink", "--http-port", str(hp), "--grpc-port", str(gp)]
            if shutil.which("taskset"):
                sink_cmd = ["taskset", "-c", str(sink_cpu)] + sink_cmd
            sink = subprocess.Popen(sink_cmd, stdout=subprocess.PIPE, text=True)
            sink.stdout.readline()
            port = hp if proto == "http" else gp
            try:
                m = run_bench(["-m", "sink", "--rate", rate, "--arrival", "constant", "-d", seconds,
                               "--warmup", 1, "-i", proto, "-u", f"localhost:{port}",
                               "--slo-ms", 10, *extra], cpu=gen_cpu)
            finally:
                sink.terminate()
                sink.wait(30)
            # Kept: everything answered and no backlog (the median request left within 1 ms of
            # its due time and was answered within --keep-p50-ms).
            ok = (m["ok"] == m["sent"] and m["p50_ms"] <= keep_p50_ms and
                  m["send_lag_p50_ms"] <= 1.0)
            steps.append({"rate": rate, "sent": m["sent"], "ok": m["ok"],
                          "throughput_rps": m["throughput_rps"], "p50_ms": m["p50_ms"],
                          "p99_ms": m["p99_ms"], "send_lag_p50_ms": m["send_lag_p50_ms"],
                          "send_lag_p99_ms": m["send_lag_p99_ms"], "kept": ok})
            print(f"  {label:11} {rate:>7} req/s on one core: answered {m['ok']}/{m['sent']}, "
                  f"p50 {m['p50_ms']:.3f} ms, p99 {m['p99_ms']:.3f} ms, send lag p50 "
                  f"{m['send_lag_p50_ms']:.3f} ms -> {'kept' if ok else 'NOT kept'}", flush=True)
            if ok:
                kept = max(kept, rate)
        out["protocols"][label] = {"steps": steps, "max_kept_rps": kept}
    return out


def perf_analyzer_p50_us(pa, model, url, proto, rate, seconds, cpu=None):
    with tempfile.TemporaryDirectory() as d:
        f = pathlib.Path(d) / "pa.csv"
        cmd = [pa, "-m", model, "-u", url, "-i", proto,
               "--request-rate-range", f"{rate}:{rate}:1",
               "--request-distribution", "constant",
               "--measurement-interval", str(int(seconds * 1000)),
               "--stability-percentage", "100", "--max-trials", "3", "-f", str(f)]
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu)] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            # On a noisy VM perf_analyzer sometimes cannot stabilise; the caller records that.
            tail = (p.stdout + p.stderr).strip().splitlines()[-1:]
            print(f"  perf_analyzer failed ({proto}): {' '.join(tail)}", flush=True)
            return None
        row = next(csv.DictReader(f.open()))
        return float(row["p50 latency"]), float(row["p99 latency"])


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def cross_check(checks, rounds, seconds):
    """Each (model, rate) on its own `tessera serve`, per protocol: `rounds` alternating pairs
    of perf_analyzer and `tessera bench` runs (the order flips every round so the machine's
    drift falls on both), compared by the median of the per-run p50s.

    On two or more cores the server (one compute thread) is pinned to the last core and both
    clients to the first, so neither client competes with the server for a core."""
    pa = ROOT / ".venv" / "bin" / "perf_analyzer"
    pa = str(pa) if pa.exists() else shutil.which("perf_analyzer")
    if not pa:
        return {"skipped": "perf_analyzer not installed (scripts/setup --test-tools)"}
    cores = os.cpu_count() or 1
    pin = cores > 1 and shutil.which("taskset") is not None
    client_cpu, server_cpu = (0, cores - 1) if pin else (None, None)
    out = {"rounds": rounds, "seconds": seconds, "client_cpu": client_cpu,
           "server_cpu": server_cpu, "server_threads_per_instance": 1, "models": {}}
    for model, rate in checks:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([str(TESSERA), "zoo", "--out", d, "--models", model], check=True,
                           stdout=subprocess.DEVNULL)
            server = TesseraServer(d, "--threads-per-instance", 1)
            try:
                if pin:
                    subprocess.run(["taskset", "-a", "-p", "-c", str(server_cpu),
                                    str(server.proc.pid)], check=True, stdout=subprocess.DEVNULL)
                res_model = {"rate": rate, "protocols": {}}
                for proto, url in (("http", server.http), ("grpc", server.grpc)):
                    pa_runs, tb_runs, failed = [], [], 0

                    def tb():
                        m = run_bench(["-m", model, "--rate", rate, "--arrival", "constant",
                                       "-d", seconds, "--warmup", 1, "-i", proto, "-u", url],
                                      cpu=client_cpu)
                        tb_runs.append({"p50_us": m["p50_ms"] * 1000,
                                        "p99_us": m["p99_ms"] * 1000,
                                        "send_lag_p50_us": m["send_lag_p50_ms"] * 1000})

                    def pa_run():
                        nonlocal failed
                        r = perf_analyzer_p50_us(pa, model, url, proto, rate, seconds, client_cpu)
                        if r is None:
                            failed += 1
                        else:
                            pa_runs.append({"p50_us": r[0], "p99_us": r[1]})

                    for i in range(rounds):
                        for step in ((pa_run, tb) if i % 2 == 0 else (tb, pa_run)):
                            step()
                    res = {"perf_analyzer": pa_runs, "tessera_bench": tb_runs,
                           "perf_analyzer_unstable_runs": failed}
                    if pa_runs and tb_runs:
                        ours = median([r["p50_us"] for r in tb_runs])
                        theirs = median([r["p50_us"] for r in pa_runs])
                        res.update({"tessera_bench_p50_us": ours, "perf_analyzer_p50_us": theirs,
                                    "ratio_p50": ours / theirs,
                                    "within_10pct": abs(ours / theirs - 1) <= 0.10})
                        print(f"  {model:13} {proto:5} {rate} req/s: tessera bench p50 "
                              f"{ours:.1f} us, perf_analyzer p50 {theirs:.1f} us (medians of "
                              f"{len(tb_runs)} / {len(pa_runs)} runs) -> ratio "
                              f"{ours / theirs:.3f}", flush=True)
                    res_model["protocols"][proto] = res
                out["models"][model] = res_model
            finally:
                server.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="5000,10000,15000,20000,25000,30000")
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--keep-p50-ms", type=float, default=2)
    ap.add_argument("--check", default="mobilenet_v2:20,tiny_mlp:200",
                    help="model:rate pairs for the perf_analyzer cross-check")
    ap.add_argument("--check-rounds", type=int, default=4)
    ap.add_argument("--check-seconds", type=float, default=6)
    ap.add_argument("--skip-capacity", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    cap = None
    if not a.skip_capacity:
        print("capacity of tessera bench on one core against tessera sink:")
        cap = capacity([int(r) for r in a.rates.split(",")], a.seconds, a.keep_p50_ms)
    print("cross-check with perf_analyzer on tessera serve:")
    checks = [(m, int(r)) for m, r in (c.split(":") for c in a.check.split(","))]
    cc = cross_check(checks, a.check_rounds, a.check_seconds)
    commit = results_file.commit()
    date = datetime.datetime.now(datetime.timezone.utc)
    result = {"benchmark": "loadgen-check", "date": date.isoformat(timespec="seconds"),
              "commit": commit, "machine": results_file.machine(), "capacity": cap, "cross_check": cc}
    out = pathlib.Path(a.out or ROOT / "bench" / "results" / f"{date:%Y-%m-%d}-loadgen.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
