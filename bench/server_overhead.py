#!/usr/bin/env python3
"""Server overhead per request and tiny-model throughput, HTTP and gRPC (not a test).

Overhead = the server's own time for a request minus its queue and compute time: from the
moment the whole request is read to the moment its response is built (parse, validation,
admission, hand-off to the executor and back, output encoding), as the per-request
`tessera_timing` parameters report it. Sequential requests (one in flight) on `tiny_mlp`, so
the numbers are the protocol path, not queueing. Throughput comes from perf_analyzer at a
fixed concurrency against the same server. Results: bench/results/<date>-server-overhead.json.

  .venv/bin/python bench/server_overhead.py [--requests N] [--concurrency C]
"""
import argparse
import datetime
import http.client
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np

import results_file  # noqa: E402  (bench/, the script's own folder)

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from server_util import TESSERA, TesseraServer  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402

PARTS = ["tessera_queue_ns", "tessera_compute_input_ns", "tessera_compute_infer_ns",
         "tessera_compute_output_ns"]


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * (len(s) - 1) + 0.5))]


def summarize(samples):
    over = [s["overhead_us"] for s in samples]
    client = [s["client_us"] for s in samples]
    return {"requests": len(samples),
            "overhead_us": {"p50": pct(over, 50), "p90": pct(over, 90), "p99": pct(over, 99),
                            "mean": sum(over) / len(over)},
            "server_total_us_p50": pct([s["server_us"] for s in samples], 50),
            "compute_infer_us_p50": pct([s["infer_us"] for s in samples], 50),
            "client_round_trip_us": {"p50": pct(client, 50), "p99": pct(client, 99)}}


def sample(params, t0):
    server_ns = params["tessera_server_ns"]
    return {"overhead_us": (server_ns - sum(params[k] for k in PARTS)) / 1e3,
            "server_us": server_ns / 1e3, "infer_us": params["tessera_compute_infer_ns"] / 1e3,
            "client_us": (time.perf_counter() - t0) * 1e6}


def http_overhead(port, n, binary):
    x = np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)
    if binary:
        head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16],
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "outputs": [{"name": "output_out", "parameters": {"binary_data": True}}],
                           "parameters": {"tessera_timing": True}}).encode()
        body, headers = head + x.tobytes(), {"Inference-Header-Content-Length": str(len(head))}
    else:
        body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16],
                                       "data": x.ravel().tolist()}],
                           "parameters": {"tessera_timing": True}}).encode()
        headers = {}
    conn = http.client.HTTPConnection("localhost", port)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/v2/models/tiny_mlp/infer", body, headers)
        r = conn.getresponse()
        raw = r.read()
        hlen = r.getheader("Inference-Header-Content-Length")
        meta = json.loads(raw[:int(hlen)] if hlen else raw)
        assert r.status == 200, meta
        out.append(sample(meta["parameters"], t0))
    return out


def grpc_overhead(port, n):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"localhost:{port}"))
    req = service_pb2.ModelInferRequest(model_name="tiny_mlp")
    t = req.inputs.add(name="input", datatype="FP32")
    t.shape.extend([1, 16])
    req.raw_input_contents.append(np.zeros((1, 16), np.float32).tobytes())
    req.parameters["tessera_timing"].bool_param = True
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = stub.ModelInfer(req)
        p = {k: v.int64_param for k, v in resp.parameters.items()}
        out.append(sample(p, t0))
    return out


def perf_analyzer(url, protocol, concurrency, seconds):
    pa = ROOT / ".venv" / "bin" / "perf_analyzer"
    if not pa.exists():
        return None
    proc = subprocess.run([str(pa), "-m", "tiny_mlp", "-u", url, "-i", protocol,
                           "--concurrency-range", str(concurrency),
                           "--measurement-interval", str(seconds * 1000),
                           "--stability-percentage", "50", "--max-trials", "20"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    tp = float(re.search(r"Throughput: ([\d.]+) infer/sec", proc.stdout).group(1))
    p50 = int(re.search(r"p50 latency: (\d+) usec", proc.stdout).group(1))
    p99 = int(re.search(r"p99 latency: (\d+) usec", proc.stdout).group(1))
    srv = re.search(r"overhead (\d+) usec \+ queue (\d+) usec \+ compute input (\d+) usec \+ "
                    r"compute infer (\d+) usec \+ compute output (\d+) usec", proc.stdout)
    return {"concurrency": concurrency, "throughput_rps": tp, "client_p50_us": p50,
            "client_p99_us": p99,
            "server_breakdown_us": dict(zip(["overhead", "queue", "compute_input",
                                             "compute_infer", "compute_output"],
                                            map(int, srv.groups()))) if srv else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=5, help="perf_analyzer measurement window")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([str(TESSERA), "zoo", "--out", d, "--models", "tiny_mlp"], check=True,
                       stdout=subprocess.DEVNULL)
        server = TesseraServer(d)
        try:
            results = {}
            for name, fn in [("http_json", lambda n: http_overhead(server.http_port, n, False)),
                             ("http_binary", lambda n: http_overhead(server.http_port, n, True)),
                             ("grpc", lambda n: grpc_overhead(server.grpc_port, n))]:
                fn(a.warmup)
                results[name] = summarize(fn(a.requests))
                r = results[name]
                print(f"{name:<12} overhead p50 {r['overhead_us']['p50']:.1f} us, p99 "
                      f"{r['overhead_us']['p99']:.1f} us (server total p50 "
                      f"{r['server_total_us_p50']:.1f} us, client round trip p50 "
                      f"{r['client_round_trip_us']['p50']:.0f} us)", flush=True)
            throughput = {}
            for proto, url in [("http", server.http), ("grpc", server.grpc)]:
                throughput[proto] = perf_analyzer(url, proto, a.concurrency, a.seconds)
                if throughput[proto]:
                    t = throughput[proto]
                    print(f"perf_analyzer {proto}: {t['throughput_rps']:.0f} infer/s at "
                          f"concurrency {a.concurrency}, client p50 {t['client_p50_us']} us, "
                          f"server {t['server_breakdown_us']}", flush=True)
        finally:
            server.stop()
    commit = results_file.commit()
    date = datetime.datetime.now(datetime.timezone.utc)
    out = pathlib.Path(a.out or ROOT / "bench" / "results" / f"{date:%Y-%m-%d}-server-overhead.json")
    out.write_text(json.dumps({
        "benchmark": "server-overhead", "date": date.isoformat(timespec="seconds"),
        "commit": commit, "machine": results_file.machine(), "model": "tiny_mlp (16 -> 64 -> 16, FP32)",
        "command": " ".join([pathlib.Path(sys.argv[0]).name] + sys.argv[1:]),
        "target": "server overhead p50 <= 50 us",
        "sequential": results, "perf_analyzer": throughput}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
