#!/usr/bin/env python3
"""The load generator's own quality bars (not a test):

1. Capacity: the highest constant rate `tessera bench` keeps on ONE core (taskset) against
   `tessera sink` (a KServe endpoint that answers at once, on the other core), per protocol.
   A rate is kept when every request is answered, the median request left the generator within
   1 ms of its due time and was answered within --keep-p50-ms (no backlog builds up: the
   generator keeps its schedule). p99s are recorded too; on a shared VM they are noisy.
2. Cross-check: a single-model constant-rate run on a real `tessera serve` (tiny_mlp), measured
   by `tessera bench` and by perf_analyzer (--request-rate-range, constant distribution) in the
   same session; their p50s should agree within 10%.

Results: bench/results/<date>-loadgen.json with machine, commit and date.

  .venv/bin/python bench/loadgen_check.py [--rates 10000,20000,30000] [--check-rate 200]
"""
import argparse
import csv
import datetime
import json
import os
import pathlib
import platform
import shutil
import socket
import subprocess
import sys
import tempfile

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


def perf_analyzer_p50_us(pa, url, proto, rate, seconds):
    with tempfile.TemporaryDirectory() as d:
        f = pathlib.Path(d) / "pa.csv"
        p = subprocess.run([pa, "-m", "tiny_mlp", "-u", url, "-i", proto,
                            "--request-rate-range", f"{rate}:{rate}:1",
                            "--request-distribution", "constant",
                            "--measurement-interval", str(int(seconds * 1000)),
                            "--stability-percentage", "100", "--max-trials", "3",
                            "-f", str(f)], capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            # On a noisy VM perf_analyzer sometimes cannot stabilise; the caller records that.
            tail = (p.stdout + p.stderr).strip().splitlines()[-1:]
            print(f"  perf_analyzer failed ({proto}): {' '.join(tail)}", flush=True)
            return None
        row = next(csv.DictReader(f.open()))
        return float(row["p50 latency"]), float(row["p99 latency"])


def cross_check(rate, seconds):
    pa = ROOT / ".venv" / "bin" / "perf_analyzer"
    pa = str(pa) if pa.exists() else shutil.which("perf_analyzer")
    if not pa:
        return {"skipped": "perf_analyzer not installed (scripts/setup --test-tools)"}
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([str(TESSERA), "zoo", "--out", d, "--models", "tiny_mlp"], check=True,
                       stdout=subprocess.DEVNULL)
        server = TesseraServer(d)
        try:
            out = {"model": "tiny_mlp", "rate": rate, "seconds": seconds, "protocols": {}}
            for proto, url in (("http", server.http), ("grpc", server.grpc)):
                # Same order both times: perf_analyzer first, then tessera bench, then again
                # perf_analyzer, to see the drift of the shared machine itself.
                # tessera bench measures from the due time, so a late timer wake-up counts
                # against it; it runs once sleeping only and once spinning the last 100 µs.
                pa1 = perf_analyzer_p50_us(pa, url, proto, rate, seconds)
                ms = [run_bench(["-m", "tiny_mlp", "--rate", rate, "--arrival", "constant", "-d",
                                 seconds, "--warmup", 1, "-i", proto, "-u", url, "--spin-us", spin])
                      for spin in (0, 100)]
                pa2 = perf_analyzer_p50_us(pa, url, proto, rate, seconds)
                if pa1 is None or pa2 is None:
                    out["protocols"][proto] = {
                        "perf_analyzer_failed": "no stable measurement",
                        "tessera_bench_p50_us": [m["p50_ms"] * 1000 for m in ms]}
                    continue
                pa_p50 = (pa1[0] + pa2[0]) / 2
                res = {"perf_analyzer_p50_us": [pa1[0], pa2[0]],
                       "perf_analyzer_p99_us": [pa1[1], pa2[1]]}
                for spin, m in zip((0, 100), ms):
                    ours = m["p50_ms"] * 1000
                    res[f"spin{spin}"] = {"tessera_bench_p50_us": ours,
                                          "tessera_bench_p99_us": m["p99_ms"] * 1000,
                                          "send_lag_p50_us": m["send_lag_p50_ms"] * 1000,
                                          "ratio_p50": ours / pa_p50}
                    print(f"  {proto:5} {rate} req/s: tessera bench (spin {spin} us) p50 "
                          f"{ours:.1f} us (send lag p50 {m['send_lag_p50_ms'] * 1000:.1f} us), "
                          f"perf_analyzer p50 {pa1[0]:.1f} / {pa2[0]:.1f} us -> ratio "
                          f"{ours / pa_p50:.3f}", flush=True)
                out["protocols"][proto] = res
        finally:
            server.stop()
    return out


def machine():
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release()}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="5000,10000,15000,20000,25000,30000")
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--keep-p50-ms", type=float, default=2)
    ap.add_argument("--check-rate", type=int, default=200)
    ap.add_argument("--check-seconds", type=float, default=10)
    ap.add_argument("--out")
    a = ap.parse_args()
    print("capacity of tessera bench on one core against tessera sink:")
    cap = capacity([int(r) for r in a.rates.split(",")], a.seconds, a.keep_p50_ms)
    print("cross-check with perf_analyzer on tessera serve:")
    cc = cross_check(a.check_rate, a.check_seconds)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    date = datetime.datetime.now(datetime.timezone.utc)
    result = {"benchmark": "loadgen-check", "date": date.isoformat(timespec="seconds"),
              "commit": commit, "machine": machine(), "capacity": cap, "cross_check": cc}
    out = pathlib.Path(a.out or ROOT / "bench" / "results" / f"{date:%Y-%m-%d}-loadgen.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
