"""`tessera plan` from the command line: the example input plans under every policy with its
invariants holding, results files carry their keys, profiles load from files, bad inputs get
clear errors and exit codes."""
import json
import subprocess

import pytest

from conftest import ROOT
from server_util import TESSERA

EXAMPLE = ROOT / "bench" / "plans" / "mixed-8.json"


def plan(*args):
    return subprocess.run([str(TESSERA), "plan", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_example_plans_under_every_policy(tessera_bin, tmp_path):
    out = tmp_path / "plans.json"
    r = plan("-i", EXAMPLE, "--policy", "all", "--json", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    for key in ("date", "commit", "machine", "plans"):
        assert key in doc
    assert set(doc["plans"]) == {"tessera", "nexus", "igniter", "gslice"}
    for name, p in doc["plans"].items():
        assert p["invariants_hold"], name
        assert p["gpus_used"] >= 1 and p["plan_ms"] >= 0
        assert p["unplaced"] == []
        placed = {m["model"] for g in p["gpus"] for s in g["slices"] for m in s["members"]}
        assert len(placed) == 8, name
        for g in p["gpus"]:
            for s in g["slices"]:
                assert s["why"]
                for m in s["members"]:
                    assert m["predicted_ms"] <= m["slo_ms"] + 1e-9
    for g in doc["plans"]["tessera"]["gpus"]:
        assert all(s["sms"] % 8 == 0 for s in g["slices"])
        assert g["sms_used"] <= 128
    assert "invariants hold" in r.stdout and "why:" in r.stdout


def test_profile_files_are_read_relative_to_the_input(tessera_bin, tmp_path):
    points = [{"sms": s, "batch": b, "mean_ms": 0.5 + 0.2 * b * 132 / s, "std_ms": 0.01}
              for s in (8, 16, 32, 64, 132) for b in (1, 2, 4, 8)]
    (tmp_path / "prof").mkdir()
    (tmp_path / "prof" / "m.json").write_text(json.dumps(
        {"model": "m", "gpu": "H100-SXM", "gpu_sms": 132, "memory_bytes": 1 << 28,
         "mem_intensity": 0.3, "points": points}))
    (tmp_path / "in.json").write_text(json.dumps(
        {"gpu": {"count": 4}, "models": [{"name": "m", "rate": 800, "slo_ms": 30,
                                           "profile": "prof/m.json"}]}))
    r = plan("-i", tmp_path / "in.json", "--json", tmp_path / "out.json")
    assert r.returncode == 0, r.stderr
    p = json.loads((tmp_path / "out.json").read_text())["plans"]["tessera"]
    assert p["models"][0]["planned_rps"] >= 800


def test_synthetic_scale_run_reports_a_summary(tessera_bin, tmp_path):
    r = plan("--synthetic", 300, "--seed", 4, "--policy", "all", "-q", "--json",
             tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["models"] == 300
    for p in doc["plans"].values():
        assert p["invariants_hold"] and p["gpus_used"] > 0 and "gpus" not in p
    assert "tessera / nexus:" in r.stdout


def test_bad_inputs_get_clear_errors(tessera_bin, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": [{"name": "a", "rate": -1, "slo_ms": 5,
                                           "synthetic": "resnet50"}]}))
    r = plan("-i", bad)
    assert r.returncode == 2
    assert "bad.json.models[0].rate: expected a number > 0, got number -1" in r.stderr
    bad.write_text("{ not json")
    r = plan("-i", bad)
    assert r.returncode == 2 and "not valid JSON" in r.stderr
    r = plan("-i", tmp_path / "missing.json")
    assert r.returncode == 3 and "cannot read" in r.stderr
    r = plan("-i", EXAMPLE, "--policy", "clockwork")
    assert r.returncode == 2 and "unknown policy 'clockwork'" in r.stderr
    r = plan()
    assert r.returncode == 2 and "exactly one of --input FILE and --synthetic N" in r.stderr


def test_too_few_gpus_leaves_models_unplaced(tessera_bin, tmp_path):
    out = tmp_path / "p.json"
    r = plan("-i", EXAMPLE, "--gpus", "1", "--json", out)
    assert r.returncode == 0, r.stderr
    assert "unplaced:" in r.stdout and "on the 1 GPUs given" in r.stdout
    unplaced = json.loads(out.read_text())["plans"]["tessera"]["unplaced"]
    assert unplaced and all(set(u) == {"model", "reason"} for u in unplaced)
    assert all("on the 1 GPUs given" in u["reason"] for u in unplaced)


def test_profile_measures_a_model_that_plan_then_uses(tessera_bin, tmp_path):
    from server_util import write_zoo
    repo = write_zoo(tmp_path / "repo", "tiny_mlp")
    prof = tmp_path / "tiny.json"
    r = subprocess.run([str(TESSERA), "profile", "--model-repository", repo, "-m", "tiny_mlp",
                        "--batches", "1,4", "--slices", "1", "-n", "3", "-o", prof],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "[2/2] batch   4" in r.stderr  # progress lines
    p = json.loads(prof.read_text())
    assert p["model"] == "tiny_mlp" and p["gpu"] == "cpu" and p["memory_bytes"] > 0
    assert [(q["sms"], q["batch"]) for q in p["points"]] == [(1, 1), (1, 4)]
    for q in p["points"]:
        assert 0 < q["mean_ms"] <= q["p99_ms"]
    (tmp_path / "in.json").write_text(json.dumps(
        {"gpu": {"kind": "cpu", "sms": p["gpu_sms"], "granularity_sms": 1, "memory_gib": 1},
         "models": [{"name": "tiny_mlp", "rate": 100, "slo_ms": 50, "profile": "tiny.json"}]}))
    r = plan("-i", tmp_path / "in.json")
    assert r.returncode == 0, r.stderr
    assert "invariants hold" in r.stdout and "0 unplaced" in r.stdout

    r = subprocess.run([str(TESSERA), "profile", "--model-repository", repo, "-m", "nope"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "nope" in r.stderr
    r = subprocess.run([str(TESSERA), "profile", "--model-repository", repo, "-m", "tiny_mlp",
                        "--batches", "100000"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "exceeds max_batch_size" in r.stderr


def test_colocate_fits_alpha_from_measured_pairs(tessera_bin, zoo_repo, tmp_path):
    import json
    import os
    import subprocess
    if (os.cpu_count() or 1) < 2:
        pytest.skip("co-location needs two cores")
    out = tmp_path / "coloc.json"
    r = subprocess.run([str(tessera_bin), "colocate", "--model-repository", str(zoo_repo),
                        "--models", "tiny_mlp,mobilenet_v2", "-n", "3", "--rounds", "1",
                        "--warmup", "1", "-q", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "alpha" in r.stdout and "leave-one-out" in r.stdout
    doc = json.loads(out.read_text())
    assert len(doc["pairs"]) == 4  # every ordered pair, a model next to itself included
    assert {p["model"] for p in doc["pairs"]} == {"tiny_mlp", "mobilenet_v2"}
    assert doc["alpha"] >= 0 and doc["bandwidth_bytes_per_s"] > 0
    for p in doc["pairs"]:
        assert p["alone_ms"] > 0 and p["together_ms"] > 0 and p["neighbour_pressure"] >= 0
        assert abs(p["predicted_ms"] - p["alone_ms"] * (1 + doc["alpha"] *
                                                         p["neighbour_pressure"])) < 1e-6
    for m in doc["models"]:
        assert 0 <= m["mem_intensity"] <= 1
    assert doc["commit"] and doc["machine"]["cores"] >= 2
    # An unknown model: not found (exit 3), named.
    r = subprocess.run([str(tessera_bin), "colocate", "--model-repository", str(zoo_repo),
                        "--models", "tiny_mlp,nope"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "nope" in r.stderr
