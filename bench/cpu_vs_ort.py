#!/usr/bin/env python3
"""CPU latency and peak memory per zoo model, Tessera vs ONNX Runtime, same machine, same run.

Each (engine, model, batch) runs in its own process so peak RSS is per model; both engines get
the same thread count, the same warm-up and the same number of timed runs. Results go to
bench/results/<date>-cpu-vs-ort.json with machine, commit and date. Not part of the tests.

  .venv/bin/python bench/cpu_vs_ort.py [--models a,b] [--batches 1,8] [--iterations N]
"""
import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import results_file  # noqa: E402  (bench/, the script's own folder)

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESSERA = ROOT / "build" / "bin" / "tessera"

ORT_RUNNER = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
path, batch, threads, warmup, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0); feeds = {}
for i in s.get_inputs():
    shape = [batch] + list(i.shape[1:])
    feeds[i.name] = rng.uniform(-1, 1, shape).astype(np.float32) if i.type == "tensor(float)" else (np.ones(shape, np.int64) if "mask" in i.name else rng.integers(0, 100, shape).astype(np.int64))
for _ in range(warmup): s.run(None, feeds)
lat = []
for _ in range(iters):
    t = time.perf_counter(); s.run(None, feeds); lat.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"latency_ms": lat}))
"""


def run_measured(cmd):
    """Runs cmd, returns (stdout, peak RSS in bytes of that process alone)."""
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err = p.stderr.read().decode()
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {err}")
        out.seek(0)
        return out.read().decode(), usage.ru_maxrss * 1024


def stats(lat):
    s = sorted(lat)
    return {"p50_ms": s[len(s) // 2], "mean_ms": sum(s) / len(s), "min_ms": s[0],
            "p99_ms": s[min(len(s) - 1, int(0.99 * (len(s) - 1) + 0.5))]}


def ort_version():
    import onnxruntime
    return onnxruntime.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=str(ROOT / "build" / "bench-zoo"))
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,vgg16,bert_small,bert_base")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternate the engines this many times; report each engine's best p50 "
                         "(robust to noisy neighbours on shared machines)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    models, batches = a.models.split(","), [int(b) for b in a.batches.split(",")]
    repo = pathlib.Path(a.repo)
    missing = [m for m in models if not (repo / m / "config.pbtxt").exists()]
    if missing:
        print(f"writing zoo models {missing} to {repo}", flush=True)
        subprocess.run([str(TESSERA), "zoo", "--out", str(repo), "--models", ",".join(missing)],
                       check=True, stdout=subprocess.DEVNULL)
    rows = []
    for m in models:
        for b in batches:
            print(f"{m} batch {b}:", end="", flush=True)
            t_runs, o_runs, t_rss, o_rss = [], [], 0, 0
            for _ in range(a.rounds):
                with tempfile.TemporaryDirectory() as d:
                    _, rss = run_measured([str(TESSERA), "infer", "--model-repository", str(repo),
                                           "--model", m, "--batch", str(b), "--threads",
                                           str(a.threads), "--warmup", str(a.warmup),
                                           "--iterations", str(a.iterations), "--json", f"{d}/r.json"])
                    t = json.loads(pathlib.Path(f"{d}/r.json").read_text())
                t_runs.append(t["latency_ms"])
                t_rss = max(t_rss, rss)
                out, rss = run_measured([sys.executable, "-c", ORT_RUNNER,
                                         str(repo / m / "1" / "model.onnx"), str(b), str(a.threads),
                                         str(a.warmup), str(a.iterations)])
                o_runs.append(json.loads(out)["latency_ms"])
                o_rss = max(o_rss, rss)
                print(".", end="", flush=True)
            t["latency_ms"] = min(t_runs, key=lambda l: stats(l)["p50_ms"])
            o = {"latency_ms": min(o_runs, key=lambda l: stats(l)["p50_ms"])}
            ts, os_ = stats(t["latency_ms"]), stats(o["latency_ms"])
            row = {"model": m, "batch": b,
                   "rounds_p50_ms": {"tessera": [stats(l)["p50_ms"] for l in t_runs],
                                     "onnxruntime": [stats(l)["p50_ms"] for l in o_runs]},
                   "tessera": {**ts, "peak_rss_bytes": t_rss,
                               "planned_activation_bytes": t["activation_bytes"],
                               "activation_bytes_no_reuse": t["activation_bytes_no_reuse"],
                               "weight_bytes": t["weight_bytes"], "latency_ms": t["latency_ms"]},
                   "onnxruntime": {**os_, "peak_rss_bytes": o_rss, "latency_ms": o["latency_ms"]},
                   "latency_ratio_p50": ts["p50_ms"] / os_["p50_ms"],
                   "rss_ratio": t_rss / o_rss}
            rows.append(row)
            print(f" p50 {ts['p50_ms']:.2f} vs {os_['p50_ms']:.2f} ms "
                  f"(x{row['latency_ratio_p50']:.2f}), RSS {t_rss >> 20} vs {o_rss >> 20} MiB", flush=True)
    commit = results_file.commit()
    date = datetime.datetime.now(datetime.timezone.utc)
    result = {"benchmark": "cpu-vs-ort", "date": date.isoformat(timespec="seconds"),
              "commit": commit, "machine": results_file.machine(onnxruntime=ort_version()),
              "threads": a.threads,
              "warmup": a.warmup, "iterations": a.iterations, "rounds": a.rounds,
              "command": " ".join([pathlib.Path(sys.argv[0]).name] + sys.argv[1:]), "results": rows}
    out = pathlib.Path(a.out or ROOT / "bench" / "results" / f"{date:%Y-%m-%d}-cpu-vs-ort.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{'model':<14}{'batch':>6}{'tessera p50':>14}{'ORT p50':>10}{'ratio':>8}{'RSS ratio':>11}")
    for r in rows:
        print(f"{r['model']:<14}{r['batch']:>6}{r['tessera']['p50_ms']:>12.2f}ms"
              f"{r['onnxruntime']['p50_ms']:>8.2f}ms{r['latency_ratio_p50']:>8.2f}{r['rss_ratio']:>11.2f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
