#!/usr/bin/env python3
"""GPU slices through the whole server (not a test): the GPU slices issue's benchmarks 1-3, each
comparing Tessera's green-context slices with its peers in the same run.

  isolation  p99 of model A at a fixed rate alone on its slice, then with model B saturating the
             rest of the GPU; green vs mps (where an MPS daemon runs) vs streams (uncontrolled
             sharing). Target: ratio <= 1.15 green.
  goodput    a 5-model mix at >= 99% SLO attainment (tessera bench --sweep): the highest goodput
             under green, streams and exclusive. Targets: >= 1.5x streams, >= 2.5x exclusive.
  resize     A under load while its slice is changed live again and again: the server's own
             resize time and host-side gap per change, and failed requests. Targets: gap
             < 100 us, 0 failed.
  replicas   A under load while an instance is added on a slice of its own (compiled and warmed
             up while the first serves) and the first is then removed: how long each call
             takes, and failed requests (target 0).

On a GPU machine: python3 bench/gpu_slices.py --tessera build/bin/tessera --out OUT.json
(results go to bench/results/<date>-gpu-slices.json without --out). `--dry-run` runs the same
plumbing on an emulated GPU (`tessera serve --engine cuda-host`: the CUDA backend's programs on
the host interpreter, slices accounted, not enforced) with small models and short loads, to check
the script anywhere; its numbers mean nothing and are never written to bench/results.
"""
import argparse
import datetime
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import results_file  # noqa: E402  (bench/, the script's own folder)

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
import server_util  # noqa: E402
from server_util import TesseraServer  # noqa: E402

# name: (zoo model, slice SMs under green, SLO ms, requests/s at rate scale 1, batch per request)
GPU_MIX = {
    "resnet50": ("resnet50", 32, 20, 400, 1),
    "bert_base": ("bert_base", 32, 40, 200, 1),
    "mobilenet_v2": ("mobilenet_v2", 16, 10, 600, 1),
    "resnet18": ("resnet18", 16, 10, 600, 1),
    "bert_small": ("bert_small", 8, 10, 800, 1),
}
DRY_MIX = {
    "tiny_mlp": ("tiny_mlp", 16, 20, 100, 1),
    "tiny_b": ("tiny_mlp", 16, 40, 50, 1),
}


def write_repo(tessera, repo, mix, sharing_slices):
    """The zoo models of `mix`, each config with one GPU instance and, when slicing, slice_sms."""
    models = ",".join(sorted({m[0] for m in mix.values()}))
    subprocess.run([tessera, "zoo", "--out", str(repo), "--models", models], check=True,
                   stdout=subprocess.DEVNULL)
    for name, (zoo_name, sms, _, _, _) in mix.items():
        src = repo / zoo_name
        if name != zoo_name:
            shutil.copytree(src, repo / name)
        cfg = repo / name / "config.pbtxt"
        text = cfg.read_text().replace(f'name: "{zoo_name}"', f'name: "{name}"')
        text += "instance_group { count: 1 kind: KIND_AUTO }\n"
        if sharing_slices:
            text += f'parameters {{ key: "slice_sms" value: {{ string_value: "{sms}" }} }}\n'
        cfg.write_text(text)


def serve(tessera, repo, args, sharing):
    extra = ["--engine", "cuda-host", "--sharing", "emulated"] if args.dry_run else \
        ["--engine", "cuda", "--sharing", sharing]
    server_util.TESSERA = pathlib.Path(tessera)
    return TesseraServer(repo, *extra, "--admin-token", "bench", timeout=900)


def bench(tessera, server, models, duration, warmup, sweep=False, extra=()):
    """Runs tessera bench on `models` [(name, rate, slo_ms, batch)]; returns its JSON."""
    with tempfile.TemporaryDirectory() as d:
        scen = pathlib.Path(d) / "s.json"
        scen.write_text(json.dumps({
            "name": "gpu-slices", "protocol": "grpc", "duration_s": duration, "warmup_s": warmup,
            "models": [{"name": n, "rate": r, "slo_ms": s, "batch": b, "arrival": "poisson"}
                       for n, r, s, b in models]}))
        out = pathlib.Path(d) / "out.json"
        cmd = [tessera, "bench", "--scenario", str(scen), "-u", server.grpc, "--json", str(out),
               "-q", *extra]
        if sweep:
            cmd += ["--sweep", "--target", "0.99"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode not in (0, 4):
            raise RuntimeError(f"tessera bench failed ({r.returncode}): {r.stderr}")
        return json.loads(out.read_text())


def model_row(run, name):
    return next(m for m in run["models"] if m["name"] == name)


def failed(m):
    return m["errors"] + m["rejected"] + m["unanswered"]


def isolation(tessera, work, mix, args):
    a, b = list(mix)[:2]
    rate_a = mix[a][3] * (0.5 if not args.dry_run else 1)
    out = {}
    for sharing in ("green", "mps", "streams"):
        repo = work / f"iso-{sharing}"
        write_repo(tessera, repo, {a: mix[a], b: mix[b]}, sharing_slices=True)
        try:
            s = serve(tessera, repo, args, sharing)
        except RuntimeError as e:
            if sharing != "mps":
                raise
            # MPS needs a daemon that partitions per context; the server says when there is none.
            out[sharing] = {"unavailable": str(e)[-600:]}
            print(f"isolation {sharing:8}: unavailable here (the server's reason is in the JSON)")
            continue
        try:
            alone = bench(tessera, s, [(a, rate_a, mix[a][2], 1)], args.duration, args.warmup)
            # B far past what its slice can serve: it keeps its share of the GPU busy.
            both = bench(tessera, s, [(a, rate_a, mix[a][2], 1),
                                      (b, mix[b][3] * args.saturate, mix[b][2], 8)],
                         args.duration, args.warmup)
        finally:
            s.stop()
        p_alone = model_row(alone["run"], a)["p99_ms"]
        p_both = model_row(both["run"], a)["p99_ms"]
        out[sharing] = {"model": a, "neighbour": b, "rate": rate_a, "p99_alone_ms": p_alone,
                        "p99_with_neighbour_ms": p_both, "ratio": p_both / p_alone}
        print(f"isolation {sharing:8}: {a} p99 alone {p_alone:.2f} ms, with {b} saturating "
              f"{p_both:.2f} ms: ratio {p_both / p_alone:.2f}")
    return out


def goodput(tessera, work, mix, args):
    out = {}
    for sharing in ("green", "streams", "exclusive"):
        repo = work / f"mix-{sharing}"
        write_repo(tessera, repo, mix, sharing_slices=sharing == "green")
        s = serve(tessera, repo, args, sharing)
        try:
            r = bench(tessera, s, [(n, m[3], m[2], m[4]) for n, m in mix.items()],
                      args.duration, args.warmup, sweep=True,
                      extra=["--sweep-start", str(args.sweep_start), "--sweep-max-steps",
                             str(args.sweep_steps), "--sweep-refine", "1"])
        finally:
            s.stop()
        sw = r["sweep"]
        steps = sw.get("steps") if isinstance(sw.get("steps"), list) else []
        out[sharing] = {"goodput_rps": sw.get("goodput_rps", 0.0),
                        "offered_rps": sw.get("offered_rps", 0.0),
                        "steps": [{"offered_rps": st.get("offered_rps"), "held": st.get("held"),
                                   "goodput_rps": st.get("total", {}).get("goodput_rps")}
                                  for st in steps]}
        print(f"goodput   {sharing:9}: {out[sharing]['goodput_rps']:.0f} req/s at >= 99% SLO "
              f"attainment")
    g = out["green"]["goodput_rps"]
    out["green_vs_streams"] = g / max(out["streams"]["goodput_rps"], 1e-9)
    out["green_vs_exclusive"] = g / max(out["exclusive"]["goodput_rps"], 1e-9)
    return out


def resize(tessera, work, mix, args):
    a = list(mix)[0]
    repo = work / "resize"
    write_repo(tessera, repo, {a: mix[a]}, sharing_slices=True)
    s = serve(tessera, repo, args, "green")
    sizes = [mix[a][1] * 2, mix[a][1], mix[a][1] * 3, mix[a][1]] if not args.dry_run else [32, 16]
    key = "sms"
    changes, result = [], {}

    def load():
        result["run"] = bench(tessera, s, [(a, mix[a][3] * 0.5, mix[a][2], 1)],
                              args.duration + 2 * len(sizes), 1.0)

    t = threading.Thread(target=load)
    try:
        t.start()
        time.sleep(1.5)
        for n in sizes:
            req = urllib.request.Request(
                f"http://{s.http}/v2/models/{a}/slice", data=json.dumps({key: n}).encode(),
                headers={"Authorization": "Bearer bench", "Content-Type": "application/json"})
            t0 = time.perf_counter()
            body = json.loads(urllib.request.urlopen(req, timeout=120).read())
            call_ms = (time.perf_counter() - t0) * 1e3
            time.sleep(2)  # the gap is known once a batch has run on the new slice
            later = json.loads(urllib.request.urlopen(
                f"http://{s.http}/v2/models/{a}/slice", timeout=30).read())
            changes.append({key: n, "call_ms": call_ms, "resize_ms": body.get("resize_ms"),
                            "gap_us": later.get("resize_gap_us")})
            print(f"resize    to {n} {key}: {changes[-1]}")
        t.join()
    finally:
        s.stop()
    m = model_row(result["run"]["run"], a)
    gaps = [c["gap_us"] for c in changes if c["gap_us"] is not None and c["gap_us"] >= 0]
    return {"model": a, "changes": changes, "requests": m["sent"], "failed": failed(m),
            "p99_ms": m["p99_ms"], "max_gap_us": max(gaps) if gaps else None}


def replicas(tessera, work, mix, args):
    a = list(mix)[0]
    repo = work / "replicas"
    write_repo(tessera, repo, {a: mix[a]}, sharing_slices=True)
    s = serve(tessera, repo, args, "green")
    calls, result = [], {}

    def load():
        result["run"] = bench(tessera, s, [(a, mix[a][3] * 0.5, mix[a][2], 1)],
                              args.duration + 4, 1.0)

    def post(path, body):
        req = urllib.request.Request(
            f"http://{s.http}/v2/models/{a}{path}", data=json.dumps(body).encode(),
            headers={"Authorization": "Bearer bench", "Content-Type": "application/json"})
        t0 = time.perf_counter()
        reply = json.loads(urllib.request.urlopen(req, timeout=120).read())
        return reply, (time.perf_counter() - t0) * 1e3

    t = threading.Thread(target=load)
    try:
        t.start()
        time.sleep(1.5)
        reply, ms = post("/instances", {"size": mix[a][1]})
        calls.append({"call": "add", "sms": mix[a][1], "call_ms": ms,
                      "instances": [i["index"] for i in reply["instance_slices"]]})
        print(f"replicas  {calls[-1]}")
        time.sleep(2)
        reply, ms = post("/instances/0/remove", {})
        calls.append({"call": "remove", "index": 0, "call_ms": ms,
                      "instances": [i["index"] for i in reply["instance_slices"]]})
        print(f"replicas  {calls[-1]}")
        t.join()
    finally:
        s.stop()
    m = model_row(result["run"]["run"], a)
    return {"model": a, "calls": calls, "requests": m["sent"], "failed": failed(m),
            "p99_ms": m["p99_ms"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tessera", default=str(ROOT / "build" / "bin" / "tessera"))
    ap.add_argument("--out", help="result file (default bench/results/<date>-gpu-slices.json)")
    ap.add_argument("--commit", help="commit the binary was built from (default: this tree's)")
    ap.add_argument("--only", default="isolation,goodput,resize,replicas")
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--saturate", type=float, default=4, help="neighbour's rate multiple")
    ap.add_argument("--sweep-start", type=float, default=0.25)
    ap.add_argument("--sweep-steps", type=int, default=6)
    ap.add_argument("--dry-run", action="store_true",
                    help="emulated GPU, small models, short loads: checks the plumbing only")
    args = ap.parse_args()
    if args.dry_run:
        args.duration, args.warmup, args.saturate = min(args.duration, 2), 0.5, 2
    mix = DRY_MIX if args.dry_run else GPU_MIX
    tessera = str(pathlib.Path(args.tessera).resolve())
    result = {"benchmark": "gpu-slices",
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "commit": args.commit or results_file.commit(), "machine": results_file.machine(),
              "dry_run": args.dry_run, "mix": mix}
    try:
        result["machine"]["gpu"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
            text=True).stdout.strip() or None
    except OSError:
        result["machine"]["gpu"] = None
    runs = {"isolation": isolation, "goodput": goodput, "resize": resize, "replicas": replicas}
    with tempfile.TemporaryDirectory() as d:
        for name in args.only.split(","):
            result[name] = runs[name](tessera, pathlib.Path(d), mix, args)
    if args.dry_run and not args.out:
        print(json.dumps({k: v for k, v in result.items() if k != "mix"}, indent=1))
        return 0
    results_file.write("gpu-slices", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
