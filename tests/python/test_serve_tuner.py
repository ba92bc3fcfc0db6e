"""`tessera serve --tune`: the planner's online tuner resizing a live model's slice from what the
server observes (rate, SLO attainment), through the same live resize as the admin API."""
import json
import os
import re
import subprocess
import time
import urllib.request

import pytest

from server_util import TESSERA, TesseraServer, write_zoo


def profile(model, ms_per_row_by_size, unit="cpu", gpu_sms=2):
    """A profile whose batch of b rows takes b x ms_per_row on a slice of that size (no gain
    from batching), so the tuner's capacities are easy to reason about: about
    1000 / ms_per_row req/s before its utilisation slack."""
    points = []
    for size, ms in ms_per_row_by_size.items():
        for b in (1, 2, 4, 8):
            points.append({"sms": size, "batch": b, "mean_ms": b * ms, "std_ms": 0.05 * b * ms,
                           "p99_ms": 1.1 * b * ms})
    return {"model": model, "gpu": unit, "gpu_sms": gpu_sms, "memory_bytes": 1 << 20,
            "mem_intensity": 0.1, "points": points}


def add_params(repo, model, **params):
    cfg = repo / model / "config.pbtxt"
    cfg.write_text(cfg.read_text() + "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n'
        for k, v in params.items()))


def slice_of(s, model):
    with urllib.request.urlopen(f"http://{s.http}/v2/models/{model}/slice", timeout=30) as r:
        return json.loads(r.read())


def metrics_of(s):
    with urllib.request.urlopen(f"http://localhost:{s.metrics_port}/metrics", timeout=30) as r:
        return r.read().decode()


def wait_until(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def load(s, model, rate, seconds):
    r = subprocess.run([str(TESSERA), "bench", "-q", "-m", model, "-u", s.grpc, "--rate",
                        str(rate), "-d", str(seconds), "--warmup", "0", "--slo-ms", "5000"],
                       capture_output=True, text=True, timeout=seconds + 60)
    assert r.returncode == 0, r.stdout + r.stderr


def two_models_on_the_emulated_gpu(tmp_path, ms_per_row_by_sms):
    """tiny_mlp and a copy of it ("neighbour"), each one GPU instance on an 8-SM slice with a
    made-up profile; returns the repository."""
    import shutil
    repo = write_zoo(tmp_path / "repo", "tiny_mlp")
    shutil.copytree(repo / "tiny_mlp", repo / "neighbour")
    cfg = repo / "neighbour" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('"tiny_mlp"', '"neighbour"'))
    for name in ("tiny_mlp", "neighbour"):
        (repo / name / "profile.json").write_text(
            json.dumps(profile(name, ms_per_row_by_sms, unit="emulated", gpu_sms=132)))
        cfg = repo / name / "config.pbtxt"
        cfg.write_text(cfg.read_text() + "instance_group { count: 1 kind: KIND_GPU }\n")
        add_params(repo, name, slo_ms=1000, profile="profile.json", slice_sms=8)
    return repo


def load_both(s, rate, seconds):
    """`rate` req/s on tiny_mlp, 20 on its neighbour, at the same time."""
    import threading
    other = threading.Thread(target=load, args=(s, "neighbour", 20, seconds))
    other.start()
    load(s, "tiny_mlp", rate, seconds)
    other.join()


TUNING_BOTH = (r"tuner: tuning (neighbour \(gpu\), tiny_mlp|tiny_mlp \(gpu\), "
               r"neighbour) \(gpu\)$")


def test_the_tuner_grows_a_loaded_cpu_slice_and_shrinks_it_when_the_load_goes(tmp_path):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two cores: a CPU slice of 1 thread grows to 2")
    repo = write_zoo(tmp_path / "repo", "tiny_mlp")
    for name in ("untuned", "bad_profile"):
        (repo / name).mkdir()
        (repo / name / "1").symlink_to(repo / "tiny_mlp" / "1", target_is_directory=True)
        (repo / name / "config.pbtxt").write_text(
            (repo / "tiny_mlp" / "config.pbtxt").read_text().replace('"tiny_mlp"', f'"{name}"'))
    # The profile says one thread carries about 40 req/s and two about 125 (so 2 is the size
    # the tuner picks for 80, whatever the cores): the real model is far faster, so only the
    # tuner's decision moves the slice, and it is deterministic.
    (repo / "tiny_mlp" / "profile.json").write_text(
        json.dumps(profile("tiny_mlp", {1: 25.0, 2: 8.0})))
    add_params(repo, "tiny_mlp", slo_ms=1000, profile="profile.json")
    add_params(repo, "untuned", slo_ms=1000)
    (repo / "bad_profile" / "p.json").write_text('{"model": "x", "points": []}')
    add_params(repo, "bad_profile", slo_ms=1000, profile="p.json")
    s = TesseraServer(repo, "--threads-per-instance", 1, "--tune", "--tune-window", 0.5, "-v")
    try:
        assert slice_of(s, "tiny_mlp")["threads"] == 1
        s._wait_for(r"tuner: tuning tiny_mlp \(cpu\)$", 30)
        s._wait_for(r"not tuning 'untuned': no profile parameter", 5)
        s._wait_for(r"not tuning 'bad_profile': profile: .*p\.json", 5)
        # 80 req/s against a 1-thread capacity of about 35: the slice grows to 2 threads.
        load(s, "tiny_mlp", 80, 4)
        assert slice_of(s, "tiny_mlp")["threads"] == 2, s.output()
        line = s._wait_for(r"tuner: tiny_mlp: rate near capacity .*1 -> 2 threads", 5)
        assert "SMs" not in line
        # With it, the batch limit the tuner sized the slice with: the profile's batches go to
        # 8, all within the SLO there (the config allows 64).
        s._wait_for(r"tuner: tiny_mlp instance 0: batches of at most 8$", 5)
        now = slice_of(s, "tiny_mlp")
        assert now["instance_slices"][0]["max_batch"] == 8, now
        assert now["max_batch"] == 64 and now["config_max_batch"] == 64, now  # the admin's
        # Nothing arrives: after the tuner's quiet windows it gives the thread back.
        wait_until(lambda: slice_of(s, "tiny_mlp")["threads"] == 1, 30, "the slice to shrink")
        s._wait_for(r"tuner: tiny_mlp: .* 2 -> 1 threads", 5)
        # The neighbours were never touched.
        assert slice_of(s, "untuned")["threads"] == 1
        assert slice_of(s, "bad_profile")["threads"] == 1
        # A fixed profile file is picked up at the next window: the tuner starts again with it.
        (repo / "bad_profile" / "p.json").write_text(
            json.dumps(profile("bad_profile", {1: 25.0, 2: 8.0})))
        s._wait_for(r"tuner: tuning (bad_profile \(cpu\), tiny_mlp|tiny_mlp \(cpu\), "
                    r"bad_profile) \(cpu\)$", 10)
        # What the tuner did, in the Prometheus metrics.
        metrics = metrics_of(s)
        for series in ('tessera_tuner_tuned{model="tiny_mlp"} 1',
                       'tessera_tuner_tuned{model="untuned"} 0',
                       'tessera_tuner_resizes_total{model="tiny_mlp",direction="grow"} 1',
                       'tessera_tuner_resizes_total{model="tiny_mlp",direction="shrink"} 1',
                       'tessera_tuner_resizes_total{model="tiny_mlp",direction="refused"} 0'):
            assert series in metrics, metrics
    finally:
        s.stop()


def test_the_tuner_resizes_a_gpu_slice_in_sms_on_the_emulated_gpu(tmp_path):
    """The GPU path end to end without a GPU (--engine cuda-host): the slice grows in whole
    8-SM groups, make-before-break, through the same SetSliceSms as `tessera slice set`; the
    live interference estimator collects its neighbours' windows."""
    repo = two_models_on_the_emulated_gpu(tmp_path,
                                          {8: 25.0, 16: 12.5, 24: 25.0 / 3, 32: 6.25})
    s = TesseraServer(repo, "--engine", "cuda-host", "--tune", "--tune-window", 0.5)
    try:
        assert slice_of(s, "tiny_mlp")["sms"] == 8
        s._wait_for(TUNING_BOTH, 30)
        load_both(s, 80, 4)
        wait_until(lambda: slice_of(s, "tiny_mlp")["sms"] > 8, 10, "the slice to grow")
        body = slice_of(s, "tiny_mlp")
        assert body["sms"] % 8 == 0 and body["resize_ms"] > 0, body
        line = s._wait_for(r"tuner: tiny_mlp: rate near capacity .*8 -> \d+ SMs", 5)
        assert re.search(r"capacity [\d.]+ req/s", line), line
        # Both slices ran next to each other: the estimator holds their windows and fits alpha.
        metrics = metrics_of(s)
        held = re.search(r'tessera_interference_live_samples\{device="gpu"\} (\d+)', metrics)
        assert held and int(held.group(1)) > 0, metrics
        assert re.search(r'tessera_interference_live_alpha\{device="gpu"\} [\d.e+-]+', metrics)
        assert 'tessera_interference_live_error{device="gpu",alpha="model"}' in metrics
        # Without --tune-learn-interference-after the tuner keeps the planner's default alpha.
        assert 'tessera_tuner_interference_alpha{device="gpu"} 0.6\n' in metrics, metrics
        assert "predicting interference with alpha" not in s.output()
    finally:
        s.stop()


def test_the_tuner_predicts_with_the_live_fit_once_told_to(tmp_path):
    """--tune-learn-interference-after N: once the live estimator holds N windows of a slice next
    to busy neighbours, the tuner predicts with the alpha fitted from them."""
    repo = two_models_on_the_emulated_gpu(tmp_path, {8: 2.0, 16: 1.0})
    s = TesseraServer(repo, "--engine", "cuda-host", "--tune", "--tune-window", 0.5,
                      "--tune-learn-interference-after", 2)
    try:
        s._wait_for(TUNING_BOTH, 30)
        load_both(s, 20, 3)
        s._wait_for(r"tuner: gpu: predicting interference with alpha [\d.e+-]+ fitted "
                    r"from \d+ live windows \(was 0.6\)", 10)
        metrics = metrics_of(s)
        used = re.search(r'tessera_tuner_interference_alpha\{device="gpu"\} ([\d.e+-]+)',
                         metrics)
        assert used and float(used.group(1)) != 0.6, metrics
    finally:
        s.stop()
    # The flag is checked.
    r = subprocess.run([str(TESSERA), "serve", "--tune-learn-interference-after", "-1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "tune-learn-interference-after" in r.stderr, r.stderr


def post(s, path, body=None):
    """POST JSON to the server; returns (status, parsed body)."""
    req = urllib.request.Request(f"http://{s.http}{path}", method="POST",
                                 data=json.dumps(body or {}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def bench_counts(s, model, rate, seconds, tmp_path):
    """`tessera bench` at `rate` req/s; returns the model's result (ok, errors, rejected, ...)."""
    out = tmp_path / f"bench_{model}_{time.time_ns()}.json"
    r = subprocess.run([str(TESSERA), "bench", "-q", "-m", model, "-u", s.grpc, "--rate",
                        str(rate), "-d", str(seconds), "--warmup", "0", "--slo-ms", "5000",
                        "--json", str(out)],
                       capture_output=True, text=True, timeout=seconds + 60)
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    return next(m for m in result["run"]["models"] if m["name"] == model)


def test_instances_are_added_changed_and_removed_live_over_http(tmp_path):
    import threading
    repo = write_zoo(tmp_path / "repo", "tiny_mlp")
    s = TesseraServer(repo, "--threads-per-instance", 1, "--live-instances")
    try:
        first = slice_of(s, "tiny_mlp")["instance_slices"]
        assert [i["index"] for i in first] == [0] and first[0]["threads"] == 1, first
        # Bad calls: clear errors, nothing changes.
        for path, body, code, words in [
                ("/v2/models/tiny_mlp/instances", {}, 400, "needs a size"),
                ("/v2/models/tiny_mlp/instances", {"size": "2"}, 400, "whole numbers"),
                ("/v2/models/tiny_mlp/instances", {"size": 1, "gpu": 0}, 400, "runs on the cpu"),
                ("/v2/models/tiny_mlp/instances", {"size": 1, "max_batch": 65}, 400, "0 (the"),
                ("/v2/models/tiny_mlp/instances/x", {"size": 1}, 400, "whole number"),
                ("/v2/models/tiny_mlp/instances/3", {"size": 1}, 404, "its instances: 0"),
                ("/v2/models/tiny_mlp/instances/0/remove", {}, 400, "is its last"),
                ("/v2/models/tiny_mlp/instances/0/drop", {}, 404, "no endpoint"),
                ("/v2/models/nope/instances", {"size": 1}, 404, "not loaded")]:
            code_got, body_got = post(s, path, body)
            assert code_got == code and words in body_got.get("error", ""), (path, body_got)
        assert len(slice_of(s, "tiny_mlp")["instance_slices"]) == 1
        # Traffic all along: an instance added, its limit changed, the config's removed.
        result = {}
        t = threading.Thread(target=lambda: result.update(
            bench_counts(s, "tiny_mlp", 200, 3, tmp_path)))
        t.start()
        time.sleep(0.5)
        code, body = post(s, "/v2/models/tiny_mlp/instances", {"size": 1, "max_batch": 2})
        assert code == 200, body
        assert [(i["index"], i["max_batch"]) for i in body["instance_slices"]] == [(0, 64), (1, 2)]
        assert body["instances"] == 2
        time.sleep(0.5)
        code, body = post(s, "/v2/models/tiny_mlp/instances/1", {"max_batch": 0})
        assert code == 200 and body["instance_slices"][1]["max_batch"] == 64, body
        code, body = post(s, "/v2/models/tiny_mlp/instances/0/remove")
        assert code == 200, body
        assert [i["index"] for i in body["instance_slices"]] == [1], body
        t.join()
        assert result["sent"] > 400 and result["errors"] == 0 and result["rejected"] == 0, result
        now = slice_of(s, "tiny_mlp")["instance_slices"]
        assert now[0]["index"] == 1 and now[0]["batches"] > 0, now
    finally:
        s.stop()
    # Without --live-instances a CPU model frees its graph's weights: no instance can be added.
    s = TesseraServer(repo, "--threads-per-instance", 1)
    try:
        code, body = post(s, "/v2/models/tiny_mlp/instances", {"size": 1})
        assert code == 400 and "--tune" in body["error"], body
    finally:
        s.stop()


def test_the_tuner_removes_an_idle_replica_on_the_cpu(tmp_path):
    repo = write_zoo(tmp_path / "repo", "tiny_mlp")
    (repo / "tiny_mlp" / "profile.json").write_text(
        json.dumps(profile("tiny_mlp", {1: 25.0, 2: 8.0})))
    cfg = repo / "tiny_mlp" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + "instance_group { count: 2 kind: KIND_CPU }\n")
    add_params(repo, "tiny_mlp", slo_ms=1000, profile="profile.json")
    s = TesseraServer(repo, "--threads-per-instance", 1, "--tune", "--tune-window", 0.3)
    try:
        assert len(slice_of(s, "tiny_mlp")["instance_slices"]) == 2
        s._wait_for(r"tuner: tuning tiny_mlp \(cpu\)$", 30)
        # Nothing arrives: after the quiet windows one replica carries the (zero) rate alone.
        wait_until(lambda: len(slice_of(s, "tiny_mlp")["instance_slices"]) == 1, 30,
                   "an instance to be removed")
        s._wait_for(r"tuner: tiny_mlp: .* the other replicas carry it; 1 threads freed", 5)
        assert 'tessera_tuner_resizes_total{model="tiny_mlp",direction="remove"} 1' in \
            metrics_of(s)
        # The one left still answers.
        assert bench_counts(s, "tiny_mlp", 50, 1, tmp_path)["ok"] > 0
    finally:
        s.stop()


def test_the_tuner_adds_a_replica_on_another_gpu_when_its_slice_cannot_grow(tmp_path):
    """Two emulated GPUs. GPU 0 is nearly full (an untuned neighbour holds 112 SMs), so tiny_mlp
    grows 8 -> 16 SMs there and, still short, gets a replica on GPU 1; once the load goes, the
    tuner removes a replica again. Nothing fails meanwhile."""
    repo = two_models_on_the_emulated_gpu(tmp_path, {8: 25.0, 16: 12.5, 24: 25.0 / 3, 32: 6.25})
    cfg = repo / "neighbour" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('value { string_value: "8" }',
                                           'value { string_value: "112" }')
                   .replace('profile', 'unused_profile'))
    s = TesseraServer(repo, "--engine", "cuda-host", "--emulated-gpus", 2, "--tune",
                      "--tune-window", 0.5)
    try:
        assert slice_of(s, "neighbour")["sms"] == 112
        s._wait_for(r"tuner: tuning tiny_mlp \(gpu\)$", 30)
        result = bench_counts(s, "tiny_mlp", 80, 4, tmp_path)
        assert result["errors"] == 0 and result["rejected"] == 0, result
        s._wait_for(r"tuner: tiny_mlp: .*a replica of \d+ SMs on GPU 1", 10)
        body = slice_of(s, "tiny_mlp")
        gpus = sorted(i["gpu"] for i in body["instance_slices"])
        assert gpus == [0, 1], body
        assert re.search(r'tessera_instance_size\{model="tiny_mlp",instance="1",gpu="1",'
                         r'unit="sms"\} \d+', metrics_of(s)), metrics_of(s)
        s._wait_for(r"model 'tiny_mlp' v1: instance 1 added \(\d+ SMs on GPU 1\)", 5)
        wait_until(lambda: len(slice_of(s, "tiny_mlp")["instance_slices"]) == 1, 60,
                   "a replica to be removed")
        metrics = metrics_of(s)
        assert 'tessera_model_instances{model="tiny_mlp"} 1' in metrics, metrics
        assert 'tessera_tuner_resizes_total{model="tiny_mlp",direction="add"} 1' in metrics
        assert 'tessera_tuner_resizes_total{model="tiny_mlp",direction="remove"} 1' in metrics
        assert slice_of(s, "neighbour")["sms"] == 112  # never touched
    finally:
        s.stop()


def test_the_tuner_empties_a_gpu_that_holds_little_onto_another(tmp_path):
    """Consolidation, make-before-break: "other" (tuned, 8 SMs) is alone on GPU 1 while GPU 0
    has 8 SMs free beside tiny_mlp and an untuned neighbour; the tuner re-makes other's slice on
    GPU 0, then removes the one on GPU 1, which ends empty. Requests to it never fail."""
    import shutil
    import threading
    repo = two_models_on_the_emulated_gpu(tmp_path, {8: 2.0, 16: 1.0})
    cfg = repo / "neighbour" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('value { string_value: "8" }',
                                           'value { string_value: "112" }')
                   .replace('profile', 'unused_profile'))
    shutil.copytree(repo / "tiny_mlp", repo / "other")
    cfg = repo / "other" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('"tiny_mlp"', '"other"')
                   .replace("instance_group { count: 1 kind: KIND_GPU }",
                            "instance_group { count: 1 kind: KIND_GPU gpus: [1] }"))
    s = TesseraServer(repo, "--engine", "cuda-host", "--emulated-gpus", 2, "--tune",
                      "--tune-window", 0.5)
    try:
        assert [i["gpu"] for i in slice_of(s, "other")["instance_slices"]] == [1]
        result = {}
        t = threading.Thread(target=lambda: result.update(
            bench_counts(s, "other", 20, 5, tmp_path)))
        t.start()
        wait_until(lambda: [i["gpu"] for i in slice_of(s, "other")["instance_slices"]] == [0],
                   30, "other to move to GPU 0")
        t.join()
        s._wait_for(r"tuner: consolidating: GPU 1 holds 8 of 128 SMs; other's 8-SM slice moves "
                    r"to GPU 0", 5)
        assert result["errors"] == 0 and result["rejected"] == 0, result
        # Its own moves do not restart the tuner (which would forget its windows).
        assert s.output().count("tuner: tuning ") == 1, s.output()
        metrics = metrics_of(s)
        assert 'tessera_tuner_resizes_total{model="other",direction="add"} 1' in metrics
        assert 'tessera_tuner_resizes_total{model="other",direction="remove"} 1' in metrics
        assert not re.search(r'tessera_instance_size\{model="[a-z_]+",instance="\d+",gpu="1"',
                             metrics), metrics
    finally:
        s.stop()


def test_slice_apply_lays_a_plan_onto_the_server(tmp_path):
    """`tessera slice apply PLAN`: each planned model gets one instance per dedicated slice (its
    GPU, SMs and batch limit); shared slices are listed, not applied; a second apply changes
    nothing."""
    import shutil
    repo = write_zoo(tmp_path / "repo", "tiny_mlp")
    shutil.copytree(repo / "tiny_mlp", repo / "other")
    cfg = repo / "other" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('"tiny_mlp"', '"other"'))
    for name in ("tiny_mlp", "other"):
        cfg = repo / name / "config.pbtxt"
        cfg.write_text(cfg.read_text() + "instance_group { count: 1 kind: KIND_GPU }\n")
        add_params(repo, name, slice_sms=8)
    plan = {"plans": {"tessera": {"gpus": [
        {"index": 0, "slices": [
            {"sms": 16, "members": [{"model": "tiny_mlp", "max_batch": 4}]},
            {"sms": 8, "members": [{"model": "a", "max_batch": 8},
                                   {"model": "b", "max_batch": 8}]}]},
        {"index": 1, "slices": [
            {"sms": 24, "members": [{"model": "tiny_mlp", "max_batch": 64}]},
            {"sms": 8, "members": [{"model": "other", "max_batch": 8}]}]}]}}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    s = TesseraServer(repo, "--engine", "cuda-host", "--emulated-gpus", 2)
    cli = [str(TESSERA), "slice", "--url", s.http]
    grpc_cli = [str(TESSERA), "slice", "--protocol", "grpc", "--url", s.grpc]

    def run(base, *args):
        r = subprocess.run(base + list(map(str, args)), capture_output=True, text=True,
                           timeout=120)
        return r.returncode, r.stdout, r.stderr

    def layout(model):
        return sorted((i["gpu"], i["sms"], i["max_batch"])
                      for i in slice_of(s, model)["instance_slices"])

    try:
        rc, out, err = run(cli, "apply", tmp_path / "plan.json", "--dry-run")
        assert rc == 0, out + err
        assert "4 change(s) to make" in out, out
        assert "a: not applied: the plan puts it on 1 shared (time-sliced) slice(s)" in out, out
        assert layout("tiny_mlp") == [(0, 8, 64)]  # a dry run changes nothing
        rc, out, err = run(grpc_cli, "apply", tmp_path / "plan.json")
        assert rc == 0, out + err
        assert "tiny_mlp: instance 0: 8 -> 16 SMs, batches of at most 4" in out, out
        assert "tiny_mlp: add an instance of 24 SMs on GPU 1, batches of at most 64" in out, out
        assert "other: remove instance 0 (not in the plan)" in out, out
        assert layout("tiny_mlp") == [(0, 16, 4), (1, 24, 64)]
        assert layout("other") == [(1, 8, 8)]
        assert infer_ok(s, "tiny_mlp") and infer_ok(s, "other")
        rc, out, err = run(cli, "apply", tmp_path / "plan.json")
        assert rc == 0 and "0 change(s) made, 0 failed" in out, out + err
        # Errors: a policy the file does not have, a missing file, a model not loaded.
        rc, out, err = run(cli, "apply", tmp_path / "plan.json", "--policy", "nexus")
        assert rc == 2 and 'has no "nexus" plan (it has: tessera)' in err, err
        rc, out, err = run(cli, "apply", tmp_path / "missing.json")
        assert rc == 3 and "cannot read plan file" in err, err
        plan["plans"]["tessera"]["gpus"][1]["slices"].append(
            {"sms": 8, "members": [{"model": "ghost", "max_batch": 8}]})
        (tmp_path / "plan2.json").write_text(json.dumps(plan))
        rc, out, err = run(cli, "apply", tmp_path / "plan2.json")
        assert rc == 1 and "ghost: not applied: HTTP 404" in out and "1 failed" in out, out
    finally:
        s.stop()


def infer_ok(s, model):
    import numpy as np
    body = {"inputs": [{"name": "input", "shape": [2, 16], "datatype": "FP32",
                        "data": np.ones(32, dtype=np.float32).tolist()}]}
    req = urllib.request.Request(f"http://{s.http}/v2/models/{model}/infer",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status == 200 and json.loads(r.read())["outputs"][0]["shape"] == [2, 16]


def test_the_tuner_sizes_the_newest_of_several_ready_versions(tmp_path):
    """version_policy all with versions 1 and 2, two instances each: the tuner takes the newest
    version's instances (and its statistics); version 1 keeps serving."""
    repo = write_zoo(tmp_path / "repo", "tiny_mlp")
    (repo / "tiny_mlp" / "2").symlink_to(repo / "tiny_mlp" / "1", target_is_directory=True)
    (repo / "tiny_mlp" / "profile.json").write_text(
        json.dumps(profile("tiny_mlp", {1: 25.0, 2: 8.0})))
    cfg = repo / "tiny_mlp" / "config.pbtxt"
    cfg.write_text(cfg.read_text() + "version_policy: { all { } }\n"
                   "instance_group { count: 2 kind: KIND_CPU }\n")
    add_params(repo, "tiny_mlp", slo_ms=1000, profile="profile.json")
    s = TesseraServer(repo, "--threads-per-instance", 1, "--tune", "--tune-window", 0.3)
    try:
        st = slice_of(s, "tiny_mlp")
        assert st["versions"] == ["1", "2"] and len(st["instance_slices"]) == 2, st
        s._wait_for(r"tuner: 'tiny_mlp' has several ready versions: tuning version 2", 30)
        s._wait_for(r"tuner: tuning tiny_mlp \(cpu\)$", 5)
        assert "not tuning 'tiny_mlp'" not in s.output()
        # Idle: version 2 gives up a replica; both versions still answer.
        wait_until(lambda: len(slice_of(s, "tiny_mlp")["instance_slices"]) == 1, 30,
                   "an instance of version 2 to be removed")
        for version in ("1", "2"):
            body = json.dumps({"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32",
                                           "data": [0.5] * 16}]}).encode()
            req = urllib.request.Request(
                f"http://{s.http}/v2/models/tiny_mlp/versions/{version}/infer", data=body,
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 200
    finally:
        s.stop()
