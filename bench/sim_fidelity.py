#!/usr/bin/env python3
"""Simulator fidelity on this machine: one model (bert_small) served by `tessera serve` on the CPU
engine under Poisson load from `tessera bench`, against `tessera simulate` of the same scenario.

On two or more cores the server (one compute thread) is pinned to the last core and the load
generator to the first, so the two do not fight over a core (the simulator has no model of
that). A slice is then one core. The simulation runs twice:
  engine      the profile of `tessera profile` (the executable alone, on the server's core);
  calibrated  the engine profile corrected by lone requests of b rows sent through the
              server just before each load level (their median end-to-end latency, b = 1, 2,
              4, 8), fitted as median(b) = transit + k x engine mean(b): k (the server's
              compute slowed by its own I/O threads on the same core) scales every batch time
              and transit (the network, the client, the fixed work per request) becomes the
              scenario's "transit_ms";
  in-run      the engine profile scaled by what the server itself measured while under the load
              (its statistics' batch_stats: compute time per executed batch, per power-of-two
              executable, mean and spread), transit = the client's mean latency - the server's
              mean request latency in the same run. This isolates the simulator's queueing and batching model
              from the VM's speed drifting between profiling and load (tens of percent here).
Each simulated figure is the simulator's expectation: one run --windows times as long as the
measurement. Beside it, the 5th..95th percentile of the statistic over --windows simulated runs
as long as the measurement shows how far one measured window moves by sampling alone (a p99 of
30 s at 30% load ranges over 0.65..1.6x its expectation; hence 120 s by default).
Reports p50, p99 and goodput from the server and the three simulations, and their ratios. Writes
bench/results/<date>-sim-fidelity.json.

The planner issue's bar: simulated and measured latency and goodput agree within 10%."""
import argparse
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import results_file  # noqa: E402  (bench/, the script's own folder)

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from server_util import TESSERA, TesseraServer, write_zoo  # noqa: E402

MODEL = "bert_small"
BATCHES = (1, 2, 4, 8)
STATS = ("p50_ms", "p99_ms", "goodput_rps")


def pinned(cmd, cpu):
    return (["taskset", "-c", str(cpu)] if cpu is not None else []) + cmd


def bench(url, cpu, *args):
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "b.json"
        subprocess.run(pinned([str(TESSERA), "bench", "-q", "-m", MODEL, "-u", url,
                               *map(str, args), "--json", str(out)], cpu),
                       check=True, capture_output=True, text=True)
        return json.loads(out.read_text())["run"]["models"][0]


def server_stats(url):
    """The model's inference and batch statistics from the server (KServe v2 statistics)."""
    with urllib.request.urlopen(f"http://{url}/v2/models/{MODEL}/stats", timeout=30) as r:
        return json.loads(r.read())["model_stats"][0]


def bucket(rows):
    """The power-of-two executable a batch of `rows` runs on (the CPU server pads to these)."""
    b = 1
    while b < rows:
        b *= 2
    return b


def in_run_profile(engine, before, after, client_mean_ms):
    """The engine profile scaled, per executable, by the compute times the server recorded
    between two statistics snapshots (mean, and the spread from the server's sum of squares,
    "tessera_compute_ms_sq"); plus the mean transit outside the server."""
    def per_rows(s):
        out = {}
        for b in s.get("batch_stats", []):
            ns = sum(b[k]["ns"] for k in ("compute_input", "compute_infer", "compute_output"))
            out[int(b["batch_size"])] = (b["compute_infer"]["count"], ns,
                                         b.get("tessera_compute_ms_sq", 0.0))
        return out
    b0, b1 = per_rows(before), per_rows(after)
    by_bucket = {}
    for rows, (n, ns, sq) in b1.items():
        n0, ns0, sq0 = b0.get(rows, (0, 0, 0.0))
        if n - n0 > 0:
            c, t, q = by_bucket.get(bucket(rows), (0, 0, 0.0))
            by_bucket[bucket(rows)] = (c + n - n0, t + ns - ns0, q + sq - sq0)
    mean = {p["batch"]: p["mean_ms"] for p in engine["points"]}
    scale = {b: (t / c / 1e6) / mean[b] for b, (c, t, _) in by_bucket.items() if b in mean}
    # The spread as it ran (the server's I/O threads and the VM interrupt compute on its core:
    # several times the quiet profile's), where enough batches ran to estimate it.
    std = {b: max(0.0, q / c - (t / c / 1e6) ** 2) ** 0.5
           for b, (c, t, q) in by_bucket.items() if b in mean and c >= 20 and q > 0}
    executions = sum(c for c, _, _ in by_bucket.values())
    k_all = (sum(t / 1e6 for b, (c, t, _) in by_bucket.items() if b in mean) /
             sum(c * mean[b] for b, (c, t, _) in by_bucket.items() if b in mean)) if scale else 1.0
    # Where the run had too few batches of a size to measure its spread: the measured sizes'
    # spread relative to the profile's, applied to the profile's.
    quiet = {p["batch"]: p["std_ms"] for p in engine["points"]}
    ratios = [std[b] / (quiet[b] * scale[b]) for b in std if quiet.get(b, 0) > 0]
    std_ratio = sum(ratios) / len(ratios) if ratios else 1.0
    points = [dict(p, mean_ms=p["mean_ms"] * scale.get(p["batch"], k_all),
                   p99_ms=p["p99_ms"] * scale.get(p["batch"], k_all),
                   std_ms=std.get(p["batch"],
                                  p["std_ms"] * scale.get(p["batch"], k_all) * std_ratio))
              for p in engine["points"]]
    ok0, ok1 = before["inference_stats"]["success"], after["inference_stats"]["success"]
    served = ok1["count"] - ok0["count"]
    server_mean_ms = (ok1["ns"] - ok0["ns"]) / served / 1e6 if served else 0.0
    transit = max(0.0, client_mean_ms - server_mean_ms)
    fit = {"executions": executions, "scale_by_batch": {str(b): round(v, 4)
                                                        for b, v in sorted(scale.items())},
           "std_ms_by_batch": {str(b): round(v, 3) for b, v in sorted(std.items())},
           "std_vs_profile": round(std_ratio, 3),
           "k": k_all, "server_mean_ms": server_mean_ms, "client_mean_ms": client_mean_ms,
           "transit_ms": transit}
    return dict(engine, gpu="cpu-in-run", points=points), fit


def fit_line(xs, ys):
    """Least squares y = a + r x, both clamped at >= 0."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    r = max(0.0, sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx) if sxx else 0.0
    return max(0.0, my - r * mx), r


def simulate(tmp, profile, rate, slo_ms, seconds, transit_ms, seed=1):
    scen = tmp / "s.json"
    scen.write_text(json.dumps({
        "gpu": {"kind": "cpu", "count": 1, "sms": 1, "granularity_sms": 1, "memory_gib": 4},
        "interference": {"alpha": 0}, "duration_s": seconds + 3, "warmup_s": 3, "seed": seed,
        "batch_buckets": "pow2",  # the CPU server pads batches to power-of-two executables
        "models": [{"name": MODEL, "rate": rate, "slo_ms": slo_ms, "profile": profile,
                    "transit_ms": transit_ms}]}))
    out = tmp / "sim.json"
    subprocess.run([str(TESSERA), "simulate", "-s", str(scen), "-q", "--json", str(out)],
                   check=True, capture_output=True, text=True)
    return json.loads(out.read_text())["policies"]["tessera"]["models"][0]


def expected(tmp, profile, rate, slo_ms, seconds, transit_ms, windows):
    """The simulator's expectation (one run `windows` times as long as the measurement) and the
    5th..95th percentile of each statistic over `windows` runs as long as the measurement: the
    spread one measured window has from sampling alone. A p99 from a few hundred requests moves
    by tens of percent from window to window; comparing it with a simulated window of the same
    length compares two noisy numbers."""
    long = simulate(tmp, profile, rate, slo_ms, seconds * windows, transit_ms, seed=1000)
    runs = [simulate(tmp, profile, rate, slo_ms, seconds, transit_ms, seed=s)
            for s in range(1, windows + 1)]
    band = {}
    for k in STATS:
        v = sorted(r[k] for r in runs)
        band[k] = (v[int(0.05 * (len(v) - 1))], v[int(round(0.95 * (len(v) - 1)))])
    return long, band


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", default="0.3,0.6,0.85",
                    help="offered loads as fractions of the profile's capacity at batch 8")
    ap.add_argument("--seconds", type=float, default=120,
                    help="measured seconds per load level (a p99 needs thousands of requests)")
    ap.add_argument("--windows", type=int, default=20,
                    help="simulated windows of the measured length, for the sampling spread; "
                         "the expectation is one run this many times as long")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    pin = cores > 1 and shutil.which("taskset") is not None
    client_cpu, server_cpu = (0, cores - 1) if pin else (None, None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        repo = write_zoo(tmp / "repo", MODEL)
        print(f"profiling {MODEL} on one core ...", flush=True)
        prof = tmp / "engine.json"
        subprocess.run(pinned([str(TESSERA), "profile", "--model-repository", str(repo), "-m",
                               MODEL, "--batches", *map(str, BATCHES), "--slices", "1",
                               "-n", "30", "--warmup", "5", "-q", "-o", str(prof)], server_cpu),
                       check=True)
        engine = json.loads(prof.read_text())
        engine["gpu_sms"] = 1  # the slice is the one core the server has
        prof.write_text(json.dumps(engine))
        mean = {p["batch"]: p["mean_ms"] for p in engine["points"]}
        p99 = {p["batch"]: p["p99_ms"] for p in engine["points"]}
        slo_ms = round(max(200.0, 2.5 * p99[BATCHES[-1]]))
        capacity = 1000.0 * BATCHES[-1] / mean[BATCHES[-1]]
        cfg = repo / MODEL / "config.pbtxt"
        cfg.write_text(cfg.read_text() +
                       f'parameters {{ key: "slo_ms" value {{ string_value: "{slo_ms}" }} }}\n')
        server = TesseraServer(repo, "--threads-per-instance", 1)
        rows = []
        try:
            if pin:
                subprocess.run(["taskset", "-a", "-p", "-c", str(server_cpu),
                                str(server.proc.pid)], check=True, stdout=subprocess.DEVNULL)

            def calibrate():
                # Lone requests of b rows (rare enough that they do not overlap), end to end.
                lone = {}
                for b in BATCHES:
                    m = bench(server.grpc, client_cpu, "--batch", b, "--rate",
                              max(2.0, 200.0 / (mean[b] + 20)), "--arrival", "constant",
                              "-d", 8, "--warmup", 1, "--slo-ms", 10000)
                    lone[b] = m["p50_ms"]
                transit, k = fit_line([mean[b] for b in BATCHES], [lone[b] for b in BATCHES])
                print(f"lone requests: median end-to-end = {transit:.3f} ms + {k:.3f} x engine "
                      f"mean", flush=True)
                prof = dict(engine, gpu="cpu-calibrated", points=[
                    dict(p, mean_ms=p["mean_ms"] * k, p99_ms=p["p99_ms"] * k,
                         std_ms=p["std_ms"] * k) for p in engine["points"]])
                path = tmp / "calibrated.json"
                path.write_text(json.dumps(prof))
                return {"lone_p50_ms": lone, "transit_ms": transit, "k": k}, path

            for load in [float(x) for x in args.loads.split(",")]:
                rate = round(load * capacity, 1)
                fit, cal = calibrate()
                transit_ms = fit["transit_ms"]
                before = server_stats(server.http)
                meas = bench(server.grpc, client_cpu, "--rate", rate, "--slo-ms", slo_ms,
                             "-d", args.seconds, "--warmup", 3)
                run_prof, run_fit = in_run_profile(engine, before, server_stats(server.http),
                                                   meas["mean_ms"])
                print(f"in the run: compute x{run_fit['k']:.3f} the engine profile "
                      f"({run_fit['executions']} batches), spread x{run_fit['std_vs_profile']:.2f} "
                      f"the profile's, transit {run_fit['transit_ms']:.3f} ms",
                      flush=True)
                run_path = tmp / "in_run.json"
                run_path.write_text(json.dumps(run_prof))
                row = {"load": load, "rate_rps": rate, "calibration": fit, "in_run": run_fit}
                for label, profile, transit in (("engine", prof, 0.0),
                                                ("calibrated", cal, transit_ms),
                                                ("in-run", run_path, run_fit["transit_ms"])):
                    sim, band = expected(tmp, str(profile), rate, slo_ms, args.seconds, transit,
                                         args.windows)
                    row[label] = {}
                    for k in STATS:
                        ratio = round(sim[k] / meas[k], 3) if meas[k] else None
                        lo, hi = band[k]
                        row[label][k] = {"measured": meas[k], "simulated": sim[k],
                                         "ratio": ratio,
                                         "within_10pct": ratio is not None and
                                         abs(ratio - 1) <= 0.1,
                                         "window_band": [lo, hi],
                                         "measured_in_band": lo <= meas[k] <= hi}
                    print(f"{rate:6.1f} req/s ({load:.0%} of capacity), {label:10} profile: " +
                          ", ".join(f"{k} measured {row[label][k]['measured']:.2f} simulated "
                                    f"{row[label][k]['simulated']:.2f} (x{row[label][k]['ratio']}; "
                                    f"a window {band[k][0]:.2f}..{band[k][1]:.2f})"
                                    for k in STATS), flush=True)
                rows.append(row)
        finally:
            server.stop()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result = {"benchmark": "sim-fidelity", "date": date, "commit": results_file.commit(),
              "machine": results_file.machine(),
              "model": MODEL, "slo_ms": slo_ms, "server_cpu": server_cpu,
              "client_cpu": client_cpu, "server_threads_per_instance": 1,
              "capacity_rps": capacity, "measured_s": args.seconds,
              "simulated_windows": args.windows, "engine_profile": engine, "runs": rows}
    results_file.write("sim-fidelity", result, args.out)


if __name__ == "__main__":
    main()
