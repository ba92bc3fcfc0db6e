"""A real `tessera serve` driven by tritonclient (HTTP and gRPC) and perf_analyzer: health,
metadata, config, inference in every encoding and datatype, shared memory, statistics,
metrics, streaming. Outputs are compared with ONNX Runtime."""
import json
import shutil
import subprocess
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
import tritonclient.utils.shared_memory as shm

from conftest import ROOT, assert_close, run_ort
from server_util import NUMPY, TesseraServer, write_identity_model, write_zoo

DTYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
          "FP16", "FP32", "FP64"]


@pytest.fixture(scope="module")
def repo(tessera_bin, tmp_path_factory):
    out = write_zoo(tmp_path_factory.mktemp("serve_repo"), "tiny_mlp,bert_small,mobilenet_v2")
    write_identity_model(out, "identity_all", DTYPES)
    write_identity_model(out, "identity_bf16", ["BF16"])
    return out


@pytest.fixture(scope="module")
def server(repo):
    s = TesseraServer(repo)
    yield s
    assert s.stop() == 0, s.output()


def clients(server):
    return [("http", th.InferenceServerClient(server.http)),
            ("grpc", tg.InferenceServerClient(server.grpc))]


def make_input(mod, name, arr, binary=True):
    dt = "BOOL" if arr.dtype == np.bool_ else {
        np.float16: "FP16", np.float32: "FP32", np.float64: "FP64"}.get(arr.dtype.type) or \
        str(arr.dtype).upper()
    i = mod.InferInput(name, list(arr.shape), dt)
    if mod is th:
        i.set_data_from_numpy(arr, binary_data=binary)
    else:
        i.set_data_from_numpy(arr)
    return i


def infer(kind, client, model, feeds, binary=True, outputs=None):
    mod = th if kind == "http" else tg
    inputs = [make_input(mod, n, a, binary) for n, a in feeds.items()]
    outs = None
    if outputs:
        outs = [mod.InferRequestedOutput(o, **({"binary_data": binary} if mod is th else {}))
                for o in outputs]
    return client.infer(model, inputs, outputs=outs)


def test_health_metadata_and_extensions(server):
    for kind, c in clients(server):
        assert c.is_server_live() and c.is_server_ready(), kind
        assert c.is_model_ready("tiny_mlp") and not c.is_model_ready("nope"), kind
        md = c.get_server_metadata()
        ext = md["extensions"] if kind == "http" else list(md.extensions)
        for e in ["binary_tensor_data", "model_repository", "statistics", "system_shared_memory",
                  "schedule_policy"]:
            assert e in ext, (kind, ext)
        mm = c.get_model_metadata("bert_small")
        inputs = mm["inputs"] if kind == "http" else [
            {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in mm.inputs]
        assert {"name": "input_ids", "datatype": "INT64", "shape": [-1, 128]} in inputs


def test_model_config_has_tritons_fields(server):
    http = th.InferenceServerClient(server.http)
    cfg = http.get_model_config("mobilenet_v2")
    assert cfg["name"] == "mobilenet_v2" and cfg["max_batch_size"] == 8
    assert cfg["input"][0]["dims"] == [3, 224, 224] and cfg["input"][0]["data_type"] == "TYPE_FP32"
    assert "dynamic_batching" in cfg
    g = tg.InferenceServerClient(server.grpc).get_model_config("mobilenet_v2").config
    assert g.max_batch_size == 8 and list(g.input[0].dims) == [3, 224, 224]
    assert list(g.output[0].dims) == [1000]  # ModelOutput.dims is field 3: wire-compatible


@pytest.mark.parametrize("kind,binary", [("http", False), ("http", True), ("grpc", True)])
@pytest.mark.parametrize("model", ["tiny_mlp", "bert_small", "mobilenet_v2"])
def test_outputs_match_onnxruntime(server, repo, kind, binary, model):
    rng = np.random.default_rng(7)
    if model == "tiny_mlp":
        feeds = {"input": rng.standard_normal((3, 16)).astype(np.float32)}
    elif model == "bert_small":
        feeds = {"input_ids": rng.integers(0, 8000, (2, 128)).astype(np.int64),
                 "attention_mask": np.ones((2, 128), np.int64)}
    else:
        feeds = {"input": rng.standard_normal((2, 3, 224, 224)).astype(np.float32)}
    client = dict(clients(server))[kind]
    res = infer(kind, client, model, feeds, binary)
    ref = run_ort(repo / model / "1" / "model.onnx", feeds)
    for name, r in ref.items():
        assert_close(res.as_numpy(name), r, what=f"{kind} {model} {name}")


@pytest.mark.parametrize("kind,binary", [("http", False), ("http", True), ("grpc", True)])
def test_every_datatype_round_trips(server, kind, binary):
    rng = np.random.default_rng(1)
    feeds = {}
    for dt in DTYPES:
        np_t = NUMPY[dt]
        if dt == "BOOL":
            a = rng.integers(0, 2, (2, 4)).astype(np.bool_)
        elif np.issubdtype(np_t, np.integer):
            info = np.iinfo(np_t)
            a = rng.integers(max(info.min, -1000), min(info.max, 1000), (2, 4)).astype(np_t)
            a[0, 0] = info.max  # extremes survive every encoding
            a[0, 1] = info.min
        else:
            a = rng.standard_normal((2, 4)).astype(np_t)
        feeds[f"in_{dt.lower()}"] = a
    client = dict(clients(server))[kind]
    mod = th if kind == "http" else tg
    inputs = [make_input(mod, n, a, binary) for n, a in feeds.items()]
    res = client.infer("identity_all", inputs,
                       outputs=[mod.InferRequestedOutput(f"out_{dt.lower()}", **(
                           {"binary_data": binary} if mod is th else {})) for dt in DTYPES])
    for dt in DTYPES:
        got = res.as_numpy(f"out_{dt.lower()}")
        np.testing.assert_array_equal(got, feeds[f"in_{dt.lower()}"], err_msg=f"{kind} {dt}")


def test_bf16_travels_as_raw_bytes(server):
    values = np.array([[1.0, -2.5, 0.15625, 3.0e38]] * 2, np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype(np.uint16)
    data = bf16.tobytes()
    header = {"inputs": [{"name": "in_bf16", "datatype": "BF16", "shape": [2, 4],
                          "parameters": {"binary_data_size": len(data)}}],
              "outputs": [{"name": "out_bf16", "parameters": {"binary_data": True}}]}
    tail = data
    head = json.dumps(header).encode()
    req = urllib.request.Request(
        f"http://{server.http}/v2/models/identity_bf16/infer", data=head + tail, method="POST",
        headers={"Inference-Header-Content-Length": str(len(head)),
                 "Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req) as r:
        body = r.read()
        hlen = int(r.headers["Inference-Header-Content-Length"])
    meta = json.loads(body[:hlen])
    assert meta["outputs"][0]["datatype"] == "BF16"
    got = np.frombuffer(body[hlen:], np.uint16).reshape(2, 4)
    np.testing.assert_array_equal(got, bf16)


def test_a_subset_of_outputs_is_returned(server):
    for kind, c in clients(server):
        feeds = {"input_ids": np.zeros((1, 128), np.int64),
                 "attention_mask": np.ones((1, 128), np.int64)}
        res = infer(kind, c, "bert_small", feeds, outputs=["pooler_output_out"])
        assert res.as_numpy("pooler_output_out").shape == (1, 256)
        assert res.as_numpy("last_hidden_state_out") is None, kind


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_system_shared_memory_inputs_and_outputs(server, repo, kind):
    mod = th if kind == "http" else tg
    c = dict(clients(server))[kind]
    x = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    key = f"/tessera_test_{kind}"
    h_in = shm.create_shared_memory_region(f"in_{kind}", key + "_in", x.nbytes)
    h_out = shm.create_shared_memory_region(f"out_{kind}", key + "_out", x.nbytes)
    try:
        shm.set_shared_memory_region(h_in, [x])
        c.register_system_shared_memory(f"in_{kind}", key + "_in", x.nbytes)
        c.register_system_shared_memory(f"out_{kind}", key + "_out", x.nbytes)
        status = c.get_system_shared_memory_status()
        names = [r["name"] for r in status] if kind == "http" else list(status.regions)
        assert f"in_{kind}" in names and f"out_{kind}" in names
        i = mod.InferInput("input", [4, 16], "FP32")
        i.set_shared_memory(f"in_{kind}", x.nbytes)
        o = mod.InferRequestedOutput("output_out")
        o.set_shared_memory(f"out_{kind}", x.nbytes)
        res = c.infer("tiny_mlp", [i], outputs=[o])
        out = res.get_output("output_out")
        assert out is not None
        y = shm.get_contents_as_numpy(h_out, np.float32, [4, 16])
        ref = run_ort(repo / "tiny_mlp" / "1" / "model.onnx", {"input": x})["output_out"]
        assert_close(y, ref, what=f"{kind} shm")
        # Out of bounds: a clear 400 / INVALID_ARGUMENT, and the server keeps serving.
        bad = mod.InferInput("input", [4, 16], "FP32")
        bad.set_shared_memory(f"in_{kind}", x.nbytes, offset=64)
        with pytest.raises(Exception, match="outside the registered"):
            c.infer("tiny_mlp", [bad])
    finally:
        c.unregister_system_shared_memory(f"in_{kind}")
        c.unregister_system_shared_memory(f"out_{kind}")
        shm.destroy_shared_memory_region(h_in)
        shm.destroy_shared_memory_region(h_out)
    status = c.get_system_shared_memory_status()
    assert not (status if kind == "http" else status.regions)


def test_statistics_count_requests_and_batches(server):
    http = th.InferenceServerClient(server.http)
    before = http.get_inference_statistics("tiny_mlp")["model_stats"][0]
    for _ in range(5):
        infer("http", http, "tiny_mlp", {"input": np.ones((2, 16), np.float32)})
    after = http.get_inference_statistics("tiny_mlp")["model_stats"][0]
    assert after["inference_stats"]["success"]["count"] == before["inference_stats"]["success"]["count"] + 5
    assert after["inference_count"] == before["inference_count"] + 10
    for k in ["queue", "compute_input", "compute_infer", "compute_output"]:
        assert after["inference_stats"][k]["ns"] > before["inference_stats"][k]["ns"]
    assert any(b["batch_size"] == 2 for b in after["batch_stats"])
    # Tessera's spread of a batch's compute time: sum of squares (ms^2) >= n x mean^2.
    for b in after["batch_stats"]:
        n = b["compute_infer"]["count"]
        ms = sum(b[k]["ns"] for k in ("compute_input", "compute_infer", "compute_output")) / 1e6
        assert b["tessera_compute_ms_sq"] >= ms * ms / n * (1 - 1e-9) > 0, b
    mem = after["memory_usage"][0]
    assert mem["type"] == "CPU" and mem["byte_size"] > 16 * 64 * 4  # at least the weights
    g = tg.InferenceServerClient(server.grpc).get_inference_statistics("tiny_mlp")
    assert g.model_stats[0].inference_count == after["inference_count"]


def test_metrics_expose_triton_and_tessera_series(server):
    http = th.InferenceServerClient(server.http)
    infer("http", http, "tiny_mlp", {"input": np.ones((1, 16), np.float32)})
    text = urllib.request.urlopen(f"http://localhost:{server.metrics_port}/metrics").read().decode()
    line = [l for l in text.splitlines()
            if l.startswith('nv_inference_request_success{model="tiny_mlp",version="1"}')]
    assert line and float(line[0].split()[-1]) >= 1
    for name in ["nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
                 "tessera_slo_attainment", "tessera_rejected_total", "tessera_queue_depth",
                 "tessera_batch_rows_bucket", "tessera_request_latency_us_bucket",
                 "tessera_model_memory_bytes"]:
        assert name in text, name
    # Each CPU model's slice: its compute threads per instance.
    threads = [l for l in text.splitlines()
               if l.startswith('tessera_model_compute_threads{model="tiny_mlp"}')]
    assert threads and int(float(threads[0].split()[-1])) >= 1, threads


def test_timing_breakdown_in_response_parameters(server):
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16}],
            "parameters": {"tessera_timing": True}}
    req = urllib.request.Request(f"http://{server.http}/v2/models/tiny_mlp/infer",
                                 data=json.dumps(body).encode(), method="POST")
    res = json.loads(urllib.request.urlopen(req).read())
    p = res["parameters"]
    for k in ["tessera_queue_ns", "tessera_compute_input_ns", "tessera_compute_infer_ns",
              "tessera_compute_output_ns", "tessera_server_ns", "tessera_batch_rows"]:
        assert k in p and p[k] >= 0
    parts = sum(p[k] for k in ["tessera_queue_ns", "tessera_compute_input_ns",
                               "tessera_compute_infer_ns", "tessera_compute_output_ns"])
    assert p["tessera_server_ns"] >= parts


def test_grpc_stream_answers_every_request(server):
    c = tg.InferenceServerClient(server.grpc)
    got = []
    c.start_stream(callback=lambda result, error: got.append((result, error)))
    for k in range(8):
        i = tg.InferInput("input", [1, 16], "FP32")
        i.set_data_from_numpy(np.full((1, 16), float(k), np.float32))
        c.async_stream_infer("tiny_mlp", [i], request_id=str(k))
    bad = tg.InferInput("input", [1, 15], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 15), np.float32))
    c.async_stream_infer("tiny_mlp", [bad], request_id="bad")
    c.stop_stream()
    assert len(got) == 9
    ok = {r.get_response().id for r, e in got if e is None}
    assert ok == {str(k) for k in range(8)}
    errors = [e for r, e in got if e is not None]
    assert len(errors) == 1 and "shape" in str(errors[0])


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "perf_analyzer").exists() and
                    not shutil.which("perf_analyzer"), reason="perf_analyzer not installed")
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_runs_without_errors(server, protocol):
    pa = ROOT / ".venv" / "bin" / "perf_analyzer"
    pa = str(pa) if pa.exists() else shutil.which("perf_analyzer")
    url = server.http if protocol == "http" else server.grpc
    proc = subprocess.run([pa, "-m", "tiny_mlp", "-u", url, "-i", protocol,
                           "--concurrency-range", "2", "--measurement-interval", "1000",
                           "-b", "2",
                           # Errors are the point here, not stable timings on a shared VM.
                           "--stability-percentage", "100", "--max-trials", "20"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Throughput:" in proc.stdout and "infer/sec" in proc.stdout
    assert "error" not in proc.stdout.lower(), proc.stdout
