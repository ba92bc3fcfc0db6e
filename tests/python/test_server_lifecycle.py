"""Server lifecycle against a real process: repository load/unload (explicit and poll modes),
admin authentication, new versions under traffic, SLO drops and queue timeouts, overload, and
graceful shutdown."""
import concurrent.futures as cf
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th

from server_util import TesseraServer, write_zoo


def make_repo(tessera_bin, path, models="tiny_mlp,bert_small"):
    return write_zoo(path, models)


def request(url, body=None, headers=None, method=None, timeout=60):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers=headers or {},
                                 method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, (json.loads(raw) if raw[:1] in (b"{", b"[") else raw)


def tiny_body(value=0.5, rows=1, params=None):
    b = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 16],
                     "data": [value] * (16 * rows)}]}
    if params:
        b["parameters"] = params
    return b


def infer(server, model="tiny_mlp", body=None, version=None, timeout=60):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return request(f"http://{server.http}{path}", body or tiny_body(), timeout=timeout)


class Traffic:
    """Sends tiny_mlp requests from a few threads until stopped; counts outcomes."""

    def __init__(self, server, threads=3):
        self.server, self.stop_flag = server, threading.Event()
        self.ok, self.failed, self.versions, self.errors = 0, 0, set(), []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.stop_flag.is_set():
            code, body = infer(self.server)
            with self.lock:
                if code == 200:
                    self.ok += 1
                    self.versions.add(body["model_version"])
                else:
                    self.failed += 1
                    self.errors.append((code, body))

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join()
        return self


def test_explicit_mode_loads_and_unloads_on_request(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo")
    s = TesseraServer(repo, "--model-control-mode", "explicit", "--load-model", "tiny_mlp")
    try:
        http = th.InferenceServerClient(s.http)
        index = {m["name"]: m for m in http.get_model_repository_index()}
        assert index["tiny_mlp"]["state"] == "READY"
        assert index["bert_small"]["state"] == "UNAVAILABLE"
        assert not http.is_model_ready("bert_small")
        http.load_model("bert_small")
        assert http.is_model_ready("bert_small")
        http.unload_model("bert_small")
        assert not http.is_model_ready("bert_small")
        with pytest.raises(Exception, match="no model 'ghost'"):
            http.load_model("ghost")
        g = tg.InferenceServerClient(s.grpc)
        g.load_model("bert_small")
        assert g.is_model_ready("bert_small")
        assert infer(s)[0] == 200
    finally:
        assert s.stop() == 0, s.output()


def test_repository_calls_need_explicit_mode(tessera_bin, tmp_path):
    s = TesseraServer(make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp"))
    try:
        code, body = request(f"http://{s.http}/v2/repository/models/tiny_mlp/unload", {})
        assert code == 400 and "explicit" in body["error"]
    finally:
        s.stop()


def test_admin_calls_need_the_bearer_token(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo")
    s = TesseraServer(repo, "--model-control-mode", "explicit", "--load-model", "tiny_mlp",
                      "--admin-token", "s3cret")
    try:
        url = f"http://{s.http}/v2/repository/models/bert_small/load"
        code, body = request(url, {})
        assert code == 401 and "admin token" in body["error"]
        code, body = request(url, {}, {"Authorization": "Bearer wrong"})
        assert code == 401 and "wrong" in body["error"]
        code, _ = request(f"http://{s.http}/v2/systemsharedmemory/region/r/register",
                          {"key": "/x", "byte_size": 8})
        assert code == 401
        code, _ = request(f"http://{s.http}/v2/logging", {"log_verbose_level": 1})
        assert code == 401
        code, _ = request(url, {}, {"Authorization": "Bearer s3cret"})
        assert code == 200
        assert infer(s, "bert_small", {"inputs": [
            {"name": "input_ids", "datatype": "INT64", "shape": [1, 128], "data": [1] * 128},
            {"name": "attention_mask", "datatype": "INT64", "shape": [1, 128],
             "data": [1] * 128}]})[0] == 200
        stub_call = tg.InferenceServerClient(s.grpc)
        with pytest.raises(Exception, match="admin token"):
            stub_call.unload_model("bert_small")
        stub_call.unload_model("bert_small", headers={"authorization": "Bearer s3cret"})
        assert infer(s)[0] == 200  # inference never needs the token
    finally:
        s.stop()


def test_a_new_version_loads_under_traffic_without_a_failed_request(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp")
    s = TesseraServer(repo, "--model-control-mode", "explicit", "--load-model", "tiny_mlp")
    try:
        traffic = Traffic(s)
        time.sleep(0.5)
        shutil.copytree(repo / "tiny_mlp" / "1", repo / "tiny_mlp" / "2")
        code, body = request(f"http://{s.http}/v2/repository/models/tiny_mlp/load", {})
        assert code == 200, body
        time.sleep(0.5)
        traffic.stop()
        assert traffic.failed == 0, traffic.errors[:3]
        assert traffic.ok > 20
        assert traffic.versions == {"1", "2"}
        assert infer(s)[1]["model_version"] == "2"
        # Unload under traffic: requests already admitted finish; later ones are refused clearly.
        with cf.ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(infer, s, "tiny_mlp", tiny_body(rows=64)) for _ in range(32)]
            time.sleep(0.05)
            code, _ = request(f"http://{s.http}/v2/repository/models/tiny_mlp/unload", {})
            assert code == 200
            results = [f.result() for f in futures]
        assert all(c in (200, 503) for c, _ in results), [r for r in results if r[0] not in (200, 503)]
        refused = [b for c, b in results if c == 503]
        assert all("not ready" in b["error"] or "not accepting" in b["error"] for b in refused)
        code, body = infer(s)
        assert code == 503 and "not ready" in body["error"]
    finally:
        s.stop()


def test_poll_mode_follows_the_repository(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp")
    spare = make_repo(tessera_bin, tmp_path / "spare", "bert_small")
    s = TesseraServer(repo, "--model-control-mode", "poll", "--repository-poll-secs", "1")
    try:
        http = th.InferenceServerClient(s.http)
        shutil.copytree(spare / "bert_small", repo / "bert_small")
        deadline = time.time() + 30
        while not http.is_model_ready("bert_small") and time.time() < deadline:
            time.sleep(0.2)
        assert http.is_model_ready("bert_small")
        shutil.rmtree(repo / "bert_small")
        deadline = time.time() + 30
        while http.is_model_ready("bert_small") and time.time() < deadline:
            time.sleep(0.2)
        assert not http.is_model_ready("bert_small")
        assert infer(s)[0] == 200
    finally:
        s.stop()


def test_slo_drops_requests_that_cannot_meet_it_before_running_them(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp")
    cfg = repo / "tiny_mlp" / "config.pbtxt"
    cfg.write_text(cfg.read_text() +
                   'parameters { key: "slo_ms" value: { string_value: "0.001" } }\n')
    s = TesseraServer(repo)
    try:
        code, body = infer(s)
        assert code == 504 and "cannot meet its deadline" in body["error"], body
        stats = th.InferenceServerClient(s.http).get_inference_statistics("tiny_mlp")
        st = stats["model_stats"][0]
        assert st["execution_count"] == 0  # dropped before dispatch: nothing ran
        assert st["tessera"]["rejects"]["slo_unmeetable"] == 1
        text = urllib.request.urlopen(f"http://localhost:{s.metrics_port}/metrics").read().decode()
        assert 'tessera_rejected_total{model="tiny_mlp",version="1",reason="slo_unmeetable"} 1' in text
    finally:
        s.stop()


def test_queue_timeouts_answer_deadline_exceeded(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp")
    cfg = repo / "tiny_mlp" / "config.pbtxt"
    # Waits up to 5 s to fill a batch of 64: a lone request with a 20 ms timeout times out.
    cfg.write_text(cfg.read_text().replace(
        "dynamic_batching {\n}", "dynamic_batching { max_queue_delay_microseconds: 5000000 "
        "preferred_batch_size: [64] }"))
    s = TesseraServer(repo)
    try:
        t0 = time.time()
        code, body = infer(s, body=tiny_body(params={"timeout": 20000}))
        assert code == 504 and "timed out in the queue" in body["error"], body
        assert time.time() - t0 < 2.0
        # gRPC: the same, as DEADLINE_EXCEEDED.
        c = tg.InferenceServerClient(s.grpc)
        i = tg.InferInput("input", [1, 16], "FP32")
        i.set_data_from_numpy(np.ones((1, 16), np.float32))
        with pytest.raises(Exception) as e:
            c.infer("tiny_mlp", [i], timeout=20000)  # the schedule_policy timeout (us)
        assert "DEADLINE_EXCEEDED" in str(e.value) or "timed out" in str(e.value)
    finally:
        s.stop()


def test_overload_is_refused_fast_and_the_server_stays_responsive(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo", "bert_small")
    s = TesseraServer(repo, "--max-queue-size", "8", "--http-threads", "2")
    body = {"inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [8, 128], "data": [1] * 1024},
        {"name": "attention_mask", "datatype": "INT64", "shape": [8, 128], "data": [1] * 1024}]}
    try:
        t0 = time.time()
        assert infer(s, "bert_small", body)[0] == 200
        one = time.time() - t0
        rss0 = s.rss_bytes()
        # About 10x what the model can run: 64 concurrent senders, each request a full batch.
        with cf.ThreadPoolExecutor(64) as pool:
            futures = [pool.submit(infer, s, "bert_small", body) for _ in range(64 * 5)]
            time.sleep(min(1.0, 5 * one))
            t1 = time.time()
            code, _ = request(f"http://{s.http}/v2/health/live")
            health_s = time.time() - t1
            results = [f.result() for f in futures]
        codes = [c for c, _ in results]
        assert code == 200 and health_s < 2.0, health_s
        assert codes.count(429) > 0 and set(codes) <= {200, 429}, set(codes)
        refusals = [b["error"] for c, b in results if c == 429]
        assert all("queue is full" in r for r in refusals)
        assert s.rss_bytes() - rss0 < 300 << 20  # queue bounded: memory does not run away
        st = th.InferenceServerClient(s.http).get_inference_statistics("bert_small")
        assert st["model_stats"][0]["tessera"]["rejects"]["queue_full"] == codes.count(429)
    finally:
        s.stop()


def test_sigterm_lets_in_flight_requests_finish(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo", "bert_small")
    s = TesseraServer(repo)
    body = {"inputs": [
        {"name": "input_ids", "datatype": "INT64", "shape": [4, 128], "data": [2] * 512},
        {"name": "attention_mask", "datatype": "INT64", "shape": [4, 128], "data": [1] * 512}]}
    with cf.ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(infer, s, "bert_small", body) for _ in range(12)]
        time.sleep(0.3)
        rc = s.stop()
        results = [f.result() for f in futures]
    assert rc == 0, s.output()
    assert [c for c, _ in results if c != 200] == [], results
    assert "stopped" in s.output()


def test_a_model_that_fails_to_load_is_reported_and_others_serve(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp,bert_small")
    (repo / "bert_small" / "1" / "model.onnx").write_bytes(b"garbage")
    s = TesseraServer(repo)
    try:
        assert "failed to load" in s.output()
        http = th.InferenceServerClient(s.http)
        assert not http.is_server_ready()  # strict readiness: a model it should serve is down
        assert http.is_server_live()
        index = {m["name"]: m for m in http.get_model_repository_index()}
        assert index["bert_small"]["state"] == "UNAVAILABLE"
        assert "malformed" in index["bert_small"]["reason"]
        assert infer(s)[0] == 200
    finally:
        s.stop()


def test_slice_parameters_are_checked_at_load_and_ignored_on_cpu(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp,bert_small")
    for model, value in (("tiny_mlp", "slice_sms"), ("bert_small", "slice_percent")):
        cfg = repo / model / "config.pbtxt"
        v = "32" if model == "tiny_mlp" else "250"
        cfg.write_text(cfg.read_text() +
                       f'parameters {{ key: "{value}" value {{ string_value: "{v}" }} }}\n')
    s = TesseraServer(repo)
    try:
        http = th.InferenceServerClient(s.http)
        index = {m["name"]: m for m in http.get_model_repository_index()}
        assert index["bert_small"]["state"] == "UNAVAILABLE"
        assert "slice_percent is '250'" in index["bert_small"]["reason"]
        assert "(0, 100]" in index["bert_small"]["reason"]
        # A valid slice loads; the CPU instance says it ignores it, and serves.
        assert index["tiny_mlp"]["state"] == "READY"
        assert "parameter slice_sms sets a GPU slice" in s.output()
        assert infer(s)[0] == 200
    finally:
        s.stop()


def test_engine_choice_follows_the_flag_the_config_and_the_machine(tessera_bin, tmp_path):
    import subprocess
    devices = subprocess.run([str(tessera_bin), "devices"], capture_output=True, text=True)
    if "no gpu" not in (devices.stdout + devices.stderr).lower():
        pytest.skip("a GPU is visible: this test checks the machine without one")
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp,bert_small")
    # --engine cuda where no GPU can be used: one clear error before anything serves.
    r = subprocess.run([str(tessera_bin), "serve", "--model-repository", str(repo),
                        "--engine", "cuda", "--http-port", "0", "--grpc-port", "0",
                        "--metrics-port", "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "--engine cuda" in r.stderr and "UNAVAILABLE" in r.stderr
    # auto falls back to the CPU and says why; a model that insists on KIND_GPU fails alone, with
    # the reason; a bad precision is refused at load on any engine.
    cfg = repo / "bert_small" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + "instance_group [ { kind: KIND_GPU } ]\n")
    for model, value in (("tiny_mlp", "tf32"),):
        c = repo / model / "config.pbtxt"
        c.write_text(c.read_text() +
                     f'parameters {{ key: "precision" value {{ string_value: "{value}" }} }}\n')
    shutil.copytree(repo / "tiny_mlp", repo / "tiny_fp8")
    c = repo / "tiny_fp8" / "config.pbtxt"
    c.write_text(c.read_text().replace('name: "tiny_mlp"', 'name: "tiny_fp8"')
                 .replace('string_value: "tf32"', 'string_value: "fp8"'))
    s = TesseraServer(repo)
    try:
        assert "engine: cpu" in s.output()
        http = th.InferenceServerClient(s.http)
        index = {m["name"]: m for m in http.get_model_repository_index()}
        assert index["bert_small"]["state"] == "UNAVAILABLE"
        assert "KIND_GPU" in index["bert_small"]["reason"]
        assert index["tiny_fp8"]["state"] == "UNAVAILABLE"
        assert "precision is 'fp8'" in index["tiny_fp8"]["reason"]
        assert index["tiny_mlp"]["state"] == "READY"
        assert infer(s)[0] == 200
    finally:
        s.stop()


def test_a_slice_changes_live_under_traffic_without_a_failed_request(tessera_bin, tmp_path):
    import os
    import subprocess
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("needs two cores to change a CPU slice")
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp")
    s = TesseraServer(repo, "--threads-per-instance", "1", "--admin-token", "sesame")
    base = f"http://{s.http}/v2/models/tiny_mlp/slice"
    auth = {"Authorization": "Bearer sesame"}
    try:
        code, body = request(base)
        assert code == 200 and body["engine"] == "cpu" and body["threads"] == 1, body
        threads_seen = lambda: infer(s, body=tiny_body(params={"tessera_timing": True}))[1][
            "parameters"]["tessera_compute_threads"]
        assert threads_seen() == 1
        traffic = Traffic(s)
        try:
            time.sleep(0.3)
            # The CLI, through the admin API; the change applies at the next batch.
            for n in (2, 1, 2):
                r = subprocess.run([str(tessera_bin), "slice", "--url", s.http, "--admin-token",
                                    "sesame", "set", "tiny_mlp", str(n)],
                                   capture_output=True, text=True, timeout=30)
                assert r.returncode == 0, r.stderr
                assert f"{n} compute thread(s)" in r.stdout
                time.sleep(0.3)
        finally:
            traffic.stop()
        assert traffic.failed == 0, traffic.errors[:3]
        assert traffic.ok > 0
        # Requests after the change really ran with two threads.
        assert threads_seen() == 2
        r = subprocess.run([str(tessera_bin), "slice", "--url", s.http, "get", "tiny_mlp"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "2 compute thread(s)" in r.stdout, r.stdout + r.stderr
        # Bad changes: clear errors, nothing else disturbed.
        assert request(base, {"threads": 2})[0] == 401  # no token
        code, body = request(base, {"threads": cores + 1}, auth)
        assert code == 400 and f"1 to {cores} compute threads" in body["error"], body
        code, body = request(base, {"threads": "two"}, auth)
        assert code == 400 and "whole number" in body["error"], body
        code, body = request(base, {"sms": 8}, auth)  # SMs are for GPU models
        assert code == 400 and "{\"threads\": N}" in body["error"], body
        code, body = request(f"http://{s.http}/v2/models/nope/slice", {"threads": 1}, auth)
        assert code == 404, body
        assert request(base)[1]["threads"] == 2
        # The same through gRPC (tessera.admin.Admin on the inference port).
        grpc_cli = [str(tessera_bin), "slice", "--protocol", "grpc", "--url", s.grpc]
        r = subprocess.run(grpc_cli + ["set", "tiny_mlp", "1"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and "token" in r.stderr.lower(), r.stdout + r.stderr
        r = subprocess.run(grpc_cli + ["--admin-token", "sesame", "set", "tiny_mlp", "1"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "1 compute thread(s)" in r.stdout, r.stdout + r.stderr
        r = subprocess.run(grpc_cli + ["--admin-token", "sesame", "set", "tiny_mlp",
                                       str(cores + 1)], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and f"1 to {cores}" in r.stderr, r.stdout + r.stderr
        r = subprocess.run(grpc_cli + ["get", "tiny_mlp"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and "1 compute thread(s)" in r.stdout, r.stdout + r.stderr
        assert threads_seen() == 1
        assert infer(s)[0] == 200
    finally:
        s.stop()


def test_a_batch_limit_is_set_live_through_http_grpc_and_the_cli(tessera_bin, tmp_path):
    import subprocess
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp")
    s = TesseraServer(repo, "--admin-token", "sesame")
    base = f"http://{s.http}/v2/models/tiny_mlp/slice"
    auth = {"Authorization": "Bearer sesame"}

    def batch_counts():
        code, body = request(f"http://{s.http}/v2/models/tiny_mlp/stats")
        assert code == 200, body
        return {b["batch_size"]: b["compute_infer"]["count"]
                for b in body["model_stats"][0]["batch_stats"]}

    def burst():  # 200 requests from 32 clients at once: they queue and batch
        with cf.ThreadPoolExecutor(32) as pool:
            codes = list(pool.map(lambda _: infer(s)[0], range(200)))
        assert codes == [200] * 200

    try:
        code, body = request(base)
        assert code == 200 and body["max_batch"] == 64 and body["config_max_batch"] == 64, body
        cli = [str(tessera_bin), "slice", "--url", s.http, "--admin-token", "sesame"]
        # (Without a limit, such a burst forms batches of 2 and 3 rows on two cores.)
        r = subprocess.run(cli + ["set", "tiny_mlp", "--max-batch", "1"], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert "batches of at most 1 (limited; max_batch_size 64)" in r.stdout, r.stdout
        assert "resized" not in r.stdout  # the slice itself did not change
        before = batch_counts()
        burst()
        after = batch_counts()
        grew = {b: n - before.get(b, 0) for b, n in after.items() if n > before.get(b, 0)}
        assert grew and max(grew) == 1, grew
        # Bad limits: clear errors; a bad limit next to a good size changes neither.
        code, body = request(base, {"max_batch": 65}, auth)
        assert code == 400 and "1 to 64" in body["error"], body
        code, body = request(base, {"threads": 1, "max_batch": "x"}, auth)
        assert code == 400 and "max_batch" in body["error"], body
        code, body = request(base, {"threads": 1, "max_batch": 99}, auth)
        assert code == 400, body
        assert request(base)[1]["max_batch"] == 1
        assert request(base, {"max_batch": 3})[0] == 401  # no token
        r = subprocess.run(cli + ["set", "tiny_mlp"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "needs a size, --max-batch, or both" in r.stderr, r.stderr
        # gRPC: the same call, and 0 lifts the limit.
        grpc_cli = [str(tessera_bin), "slice", "--protocol", "grpc", "--url", s.grpc,
                    "--admin-token", "sesame"]
        r = subprocess.run(grpc_cli + ["set", "tiny_mlp", "--max-batch", "5"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "batches of at most 5 (limited" in r.stdout, r.stdout
        r = subprocess.run(grpc_cli + ["set", "tiny_mlp", "--max-batch", "65"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "1 to 64" in r.stderr, r.stdout + r.stderr
        r = subprocess.run(grpc_cli + ["set", "tiny_mlp", "--max-batch", "0"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "batches of at most 64\n" in r.stdout, r.stdout
        assert request(base)[1]["max_batch"] == 64
        assert infer(s)[0] == 200
    finally:
        s.stop()


def test_slice_add_and_remove_change_a_models_instances_live_over_http_and_grpc(tessera_bin,
                                                                                tmp_path):
    import subprocess
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp")
    s = TesseraServer(repo, "--admin-token", "sesame", "--live-instances",
                      "--threads-per-instance", "1")
    http_cli = [str(tessera_bin), "slice", "--url", s.http, "--admin-token", "sesame"]
    grpc_cli = [str(tessera_bin), "slice", "--protocol", "grpc", "--url", s.grpc,
                "--admin-token", "sesame"]

    def run(cli, *args):
        r = subprocess.run(cli + list(map(str, args)), capture_output=True, text=True,
                           timeout=60)
        return r.returncode, r.stdout, r.stderr

    try:
        rc, out, err = run(http_cli, "add", "tiny_mlp", 1, "--max-batch", 4)
        assert rc == 0, err
        assert "2 instance(s)" in out and "instance 1: 1 compute thread(s), batches of at most 4" \
            in out, out
        rc, out, err = run(grpc_cli, "add", "tiny_mlp", 1)
        assert rc == 0 and "3 instance(s)" in out and "instance 2:" in out, out + err
        assert infer(s)[0] == 200
        # One instance's own limit, over gRPC; the others keep the model's.
        rc, out, err = run(grpc_cli, "set", "tiny_mlp", "--instance", 2, "--max-batch", 2)
        assert rc == 0 and "instance 2: 1 compute thread(s), batches of at most 2" in out, out
        assert "instance 0: 1 compute thread(s), batches of at most 64" in out, out
        rc, out, err = run(http_cli, "remove", "tiny_mlp", 0)
        assert rc == 0 and "2 instance(s)" in out and "instance 0" not in out, out + err
        rc, out, err = run(grpc_cli, "remove", "tiny_mlp", 1)
        assert rc == 0 and "1 instance(s)" in out, out + err
        # Errors: the last instance, an unknown one, a bad size; no token.
        rc, out, err = run(http_cli, "remove", "tiny_mlp", 2)
        assert rc == 2 and "is its last" in err, err
        rc, out, err = run(grpc_cli, "remove", "tiny_mlp", 7)
        assert rc == 1 and "its instances: 2" in err, err
        rc, out, err = run(grpc_cli, "add", "tiny_mlp", 999)
        assert rc == 2 and "compute threads, got 999" in err, err
        rc, out, err = run([str(tessera_bin), "slice", "--url", s.http], "add", "tiny_mlp", 1)
        assert rc != 0 and "401" in err, err
        rc, out, err = run(http_cli, "get", "tiny_mlp")
        assert rc == 0 and "1 instance(s)" in out and "instance 2:" in out, out
        assert infer(s)[0] == 200
        # A plan for the CPU: its slices are threads, its GPU indices do not matter here.
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"gpus": [{"index": 0, "slices": [
            {"sms": 1, "members": [{"model": "tiny_mlp", "max_batch": 8}]},
            {"sms": 1, "members": [{"model": "tiny_mlp", "max_batch": 64}]}]}]}))
        rc, out, err = run(http_cli, "apply", plan)
        assert rc == 0 and "2 change(s) made, 0 failed" in out, out + err
        rc, out, err = run(http_cli, "get", "tiny_mlp")
        assert "2 instance(s)" in out and "batches of at most 8," in out, out
        assert infer(s)[0] == 200
        if (os.cpu_count() or 1) >= 2:  # one instance on 2 threads: the sizes now differ
            rc, out, err = run(grpc_cli, "set", "tiny_mlp", 2, "--instance", 2)
            assert rc == 0 and "instances of different sizes, 2 instance(s)" in out, out + err
            assert "instance 2: 2 compute thread(s)" in out, out
    finally:
        s.stop()


def test_a_load_past_the_memory_budget_is_refused_and_the_rest_serves(tessera_bin, tmp_path):
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp,bert_small")

    def memory(server, model):
        code, body = request(f"http://{server.http}/v2/models/{model}/stats")
        assert code == 200, body
        return body["model_stats"][0]["memory_usage"][0]["byte_size"]

    s = TesseraServer(repo)
    try:
        tiny, bert = memory(s, "tiny_mlp"), memory(s, "bert_small")
    finally:
        s.stop()
    assert tiny > 0 and bert > tiny
    # Room for tiny_mlp and a third of bert_small: bert_small is refused, tiny_mlp serves.
    budget_mib = (tiny + bert // 3) // (1 << 20) + 1
    s = TesseraServer(repo, "--memory-budget-mib", budget_mib, "--model-control-mode",
                      "explicit", "--load-model", "tiny_mlp")
    try:
        auth = {}
        url = f"http://{s.http}/v2/repository/models/bert_small/load"
        code, body = request(url, {}, auth)
        assert code == 429, body  # RESOURCE_EXHAUSTED
        msg = body["error"]
        assert "loading 'bert_small v1' needs" in msg and "the CPU" in msg, msg
        assert "held by tiny_mlp v1" in msg and "nothing was changed" in msg, msg
        assert infer(s)[0] == 200
        index = {m["name"]: m for m in th.InferenceServerClient(s.http)
                 .get_model_repository_index()}
        assert index["tiny_mlp"]["state"] == "READY"
        assert index["bert_small"]["state"] != "READY"
        # Unloading tiny_mlp gives its memory back: still not enough for bert_small alone.
        assert request(f"http://{s.http}/v2/repository/models/tiny_mlp/unload", {})[0] == 200
        assert request(f"http://{s.http}/v2/repository/models/tiny_mlp/load", {})[0] == 200
        assert infer(s)[0] == 200
    finally:
        s.stop()


def test_gpu_sharing_without_a_gpu_is_a_clear_error(tessera_bin, tmp_path):
    import subprocess
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp")
    r = subprocess.run([str(tessera_bin), "serve", "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0
    for flag in ("--sharing", "--completion", "--gpu-pipeline"):
        assert flag in r.stdout, flag
    # Asking for slices where there is no GPU stops at once, saying why; auto just serves.
    for kind in ("green", "mps"):
        r = subprocess.run([str(tessera_bin), "serve", "--model-repository", str(repo),
                            "--http-port", "-1", "--grpc-port", "-1", "--metrics-port", "-1",
                            "--sharing", kind], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"--sharing {kind}" in r.stderr and ("no GPU" in r.stderr or
                                                    "no CUDA" in r.stderr), r.stderr
    r = subprocess.run([str(tessera_bin), "serve", "--model-repository", str(repo),
                        "--sharing", "halves"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "halves" in r.stderr, r.stderr
    # The emulated GPU goes with the host-interpreted CUDA engine only, and the other way round.
    for args, said in [(["--sharing", "emulated"], "needs --engine cuda-host"),
                       (["--engine", "cuda-host", "--sharing", "green"], "--sharing emulated")]:
        r = subprocess.run([str(tessera_bin), "serve", "--model-repository", str(repo),
                            "--http-port", "-1", "--grpc-port", "-1", "--metrics-port", "-1",
                            *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and said in r.stderr, (args, r.stderr)


def test_large_grpc_inputs_on_a_sliced_gpu_land_in_body_memory_and_answer_right(tessera_bin,
                                                                                 tmp_path):
    """On a sliced GPU (here the emulated one) a ModelInfer message of 64 KiB or more is read
    field by field and its raw tensors copied once into the GPUs' pinned body memory
    (src/server/grpc_wire.h): answers match, size errors are clear, the server keeps serving."""
    import onnx
    from onnx import TensorProto, helper
    repo = tmp_path / "repo"
    (repo / "wide_add" / "1").mkdir(parents=True)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])], "wide_add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 32768])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32768])],
        [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(repo / "wide_add" / "1" / "model.onnx"))
    (repo / "wide_add" / "config.pbtxt").write_text(
        'name: "wide_add"\nmax_batch_size: 4\n'
        'input { name: "x" data_type: TYPE_FP32 dims: [ 32768 ] }\n'
        'output { name: "y" data_type: TYPE_FP32 dims: [ 32768 ] }\n'
        'instance_group { count: 1 kind: KIND_GPU }\n'
        'parameters { key: "slice_sms" value: { string_value: "8" } }\n')
    s = TesseraServer(repo, "--engine", "cuda-host")
    try:
        client = tg.InferenceServerClient(s.grpc)
        rng = np.random.default_rng(3)
        for rows in (1, 3):  # 128 KiB and 384 KiB of raw input
            x = rng.standard_normal((rows, 32768)).astype(np.float32)
            inp = tg.InferInput("x", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            out = client.infer("wide_add", [inp]).as_numpy("y")
            np.testing.assert_array_equal(out, x + 1)
        # The raw bytes do not fit the shape: INVALID_ARGUMENT, and the next request is fine.
        from tritonclient.grpc import service_pb2, service_pb2_grpc
        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(s.grpc))
        req = service_pb2.ModelInferRequest(model_name="wide_add")
        req.inputs.add(name="x", datatype="FP32", shape=[1, 32768])
        req.raw_input_contents.append(b"\0" * (4 * 32768 - 4))
        with pytest.raises(grpc.RpcError) as e:
            stub.ModelInfer(req, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert "131068" in e.value.details(), e.value.details()
        # Proof of the field-by-field path: it refuses a varint longer than needed (model_name's
        # length 8 written in 2 bytes), which protobuf's whole parse would accept.
        raw_call = grpc.insecure_channel(s.grpc).unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        tensor = req.inputs[0].SerializeToString()
        msg = (b"\x0a\x88\x00wide_add"                            # field 1, length 8 in 2 bytes
               + b"\x2a" + bytes([len(tensor)]) + tensor           # field 5: the input
               + b"\x3a\x80\x80\x08" + b"\0" * (4 * 32768))      # field 7: 131072 raw bytes
        with pytest.raises(grpc.RpcError) as e:
            raw_call(msg, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value
        assert "longer than their value needs" in e.value.details(), e.value.details()
        x = np.ones((1, 32768), np.float32)
        inp = tg.InferInput("x", [1, 32768], "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("wide_add", [inp]).as_numpy("y"), x + 1)
    finally:
        s.stop()


def test_gpu_slices_resize_live_on_the_emulated_gpu(tessera_bin, tmp_path):
    """The GPU serving path end to end without a GPU: --engine cuda-host runs the CUDA backend's
    lowered programs on the host, on an emulated GPU whose slices are accounted like a real one's.
    Slices per instance, answers, live resize in SMs under traffic (HTTP, CLI, gRPC), refusals,
    metrics."""
    import shutil
    import subprocess
    repo = make_repo(tessera_bin, tmp_path / "repo", "tiny_mlp")
    shutil.copytree(repo / "tiny_mlp", repo / "cpu_mlp")
    shutil.copytree(repo / "tiny_mlp", repo / "neighbour")
    for name, extra in [("tiny_mlp", 'instance_group { count: 2 kind: KIND_GPU }\n'
                                     'parameters { key: "slice_sms" value: { string_value: "16" } }\n'),
                        ("neighbour", 'instance_group { count: 1 kind: KIND_GPU }\n'
                                      'parameters { key: "slice_sms" value: { string_value: "64" } }\n'),
                        ("cpu_mlp", "instance_group { count: 1 kind: KIND_CPU }\n")]:
        cfg = repo / name / "config.pbtxt"
        cfg.write_text(cfg.read_text().replace('name: "tiny_mlp"', f'name: "{name}"') + extra)
    s = TesseraServer(repo, "--engine", "cuda-host", "--admin-token", "sesame")
    base = f"http://{s.http}/v2/models/tiny_mlp/slice"
    auth = {"Authorization": "Bearer sesame"}
    try:
        code, body = request(base)
        assert code == 200, body
        assert (body["engine"], body["sms"], body["gpu_sms"], body["confined"], body["sharing"]) == \
            ("cuda-host", 16, 132, True, "emulated"), body
        # Same answers as the CPU engine, and the slice each batch ran on.
        for v in (0.25, -1.5):
            g = infer(s, body=tiny_body(v, rows=3, params={"tessera_timing": True}))
            c = infer(s, "cpu_mlp", body=tiny_body(v, rows=3))
            assert g[0] == 200 and c[0] == 200, (g, c)
            assert g[1]["parameters"]["tessera_gpu_sms"] == 16
            np.testing.assert_allclose(g[1]["outputs"][0]["data"], c[1]["outputs"][0]["data"],
                                       rtol=1e-5, atol=1e-5)
        traffic = Traffic(s)
        try:
            time.sleep(0.3)
            for n in (32, 24, 8):
                r = subprocess.run([str(tessera_bin), "slice", "--url", s.http, "--admin-token",
                                    "sesame", "set", "tiny_mlp", str(n)],
                                   capture_output=True, text=True, timeout=60)
                assert r.returncode == 0, r.stdout + r.stderr
                assert f"{n} of 132 SMs" in r.stdout and "resized live in" in r.stdout, r.stdout
                time.sleep(0.3)
            # Refusals change nothing: not whole groups, more than the GPU, more than is free.
            code, body = request(base, {"sms": 20}, auth)
            assert code == 400 and "multiple of 8" in body["error"], body
            code, body = request(base, {"sms": 136}, auth)
            assert code == 400 and "at most 128" in body["error"], body
            code, body = request(base, {"sms": 40}, auth)  # 2 x 40 + 64 > 128
            assert code == 429 and "nothing was changed" in body["error"], body
            code, body = request(base, {"threads": 2}, auth)
            assert code == 400 and '{"sms": N}' in body["error"], body
            assert request(base, {"sms": 16})[0] == 401  # no token
        finally:
            traffic.stop()
        assert traffic.failed == 0, traffic.errors[:3]
        assert traffic.ok > 0
        code, body = request(base)
        assert body["sms"] == 8 and body["resize_ms"] > 0, body
        # Traffic ran on both sides of the last flip: the gap it caused is known.
        assert body["resize_gap_us"] >= 0, body
        assert infer(s, body=tiny_body(params={"tessera_timing": True}))[1]["parameters"][
            "tessera_gpu_sms"] == 8
        # Over gRPC too.
        r = subprocess.run([str(tessera_bin), "slice", "--protocol", "grpc", "--url", s.grpc,
                            "--admin-token", "sesame", "set", "tiny_mlp", "16"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "16 of 132 SMs" in r.stdout, r.stdout + r.stderr
        text = urllib.request.urlopen(f"http://localhost:{s.metrics_port}/metrics").read().decode()
        assert 'tessera_model_slice_sms{model="tiny_mlp",gpu="0",sharing="emulated"} 16' in text
        assert 'tessera_model_slice_sms{model="neighbour",gpu="0",sharing="emulated"} 64' in text
    finally:
        assert s.stop() == 0, s.output()
