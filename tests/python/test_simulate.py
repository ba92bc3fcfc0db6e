"""`tessera simulate` from the command line: the example scenario runs under every policy and
its results file has the keys the planner issue names; the headroom search reports a target
met; bad scenarios get clear errors and exit codes."""
import json
import subprocess

from conftest import ROOT
from server_util import TESSERA

EXAMPLE = ROOT / "bench" / "sim" / "mixed-8.json"


def simulate(*args):
    return subprocess.run([str(TESSERA), "simulate", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_example_scenario_under_every_policy(tessera_bin, tmp_path):
    out = tmp_path / "sim.json"
    r = simulate("-s", EXAMPLE, "--policy", "all", "-d", "10", "--warmup", "2", "--json", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    for key in ("date", "commit", "machine", "offered_rps", "policies"):
        assert key in doc
    assert set(doc["policies"]) == {"tessera", "nexus", "igniter", "gslice"}
    for name, p in doc["policies"].items():
        for key in ("gpus_used", "slo_attainment", "goodput_rps", "plan_ms", "sim_wall_s"):
            assert key in p, (name, key)
        assert p["sent"] == p["ok"] + p["late"] + p["dropped"]
        assert 0 <= p["slo_attainment"] <= 1
        assert len(p["models"]) == 8
        # The offered load is ~16,850 req/s over 8 counted seconds.
        assert abs(p["sent"] - 16850 * 8) < 0.05 * 16850 * 8, name
    assert doc["policies"]["tessera"]["slo_attainment"] > 0.99


def test_tuner_follows_phase_shifted_load(tessera_bin, tmp_path):
    # Models peaking at different times: the plan for the mean rates misses at the peaks;
    # with the tuner the same plan holds the SLO through live resizes, and says why.
    scenario = ROOT / "bench" / "sim" / "diurnal-8.json"
    fixed, tuned = tmp_path / "f.json", tmp_path / "t.json"
    r = simulate("-s", scenario, "-d", "60", "--warmup", "5", "--json", fixed)
    assert r.returncode == 0, r.stderr
    r = simulate("-s", scenario, "-d", "60", "--warmup", "5", "--tune", "--actions", "--json",
                 tuned)
    assert r.returncode == 0, r.stderr
    assert "rate near capacity" in r.stdout
    f = json.loads(fixed.read_text())["policies"]["tessera"]
    t = json.loads(tuned.read_text())
    assert t["tuner"]["interval_s"] == 1
    t = t["policies"]["tessera"]
    assert f["slo_attainment"] < 0.95
    assert t["slo_attainment"] > 0.999
    assert t["resizes"] + t["replicas_added"] > 0 and t["actions"]
    assert t["gpus_used"] >= t["planned_gpus"] and t["mean_gpus"] <= t["gpus_used"]
    assert t["timeline_columns"][0] == "t_s" and len(t["timeline"]) == 60
    assert sum(w[1] for w in t["timeline"]) >= t["sent"]


def test_target_search_meets_the_target(tessera_bin, tmp_path):
    out = tmp_path / "t.json"
    r = simulate("--synthetic", 12, "--seed", 3, "-d", "6", "--warmup", "1", "--target", "0.99",
                 "--json", out)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    p = doc["policies"]["tessera"]
    assert p["target_met"] and p["slo_attainment"] >= 0.99
    assert 0.5 <= p["planning_headroom"] <= 2.5
    assert "headroom" in r.stdout
    # By default every model must reach 99% too (an SLO is each model's promise).
    assert doc["model_floor"] == 0.99
    assert min(m["slo_attainment"] for m in p["models"] if m["sent"] >= 1000) >= 0.99


def test_model_floor_holds_every_model(tessera_bin, tmp_path):
    # Judged on the fleet alone (floor 0), a loose target lets the search starve a model; with
    # a floor every model must reach it, which costs GPUs.
    def run(floor):
        out = tmp_path / f"f{floor}.json"
        r = simulate("--synthetic", 12, "--seed", 3, "-d", "6", "--warmup", "1", "--target",
                     "0.9", "--model-floor", floor, "-q", "--json", out)
        assert r.returncode == 0, r.stderr
        p = json.loads(out.read_text())["policies"]["tessera"]
        assert p["target_met"]
        return p, min(m["slo_attainment"] for m in p["models"] if m["sent"] >= 1000)
    loose, loose_min = run(0)
    strict, strict_min = run(0.99999)
    assert loose_min < 0.99999 <= strict_min
    assert strict["gpus_used"] >= loose["gpus_used"]
    r = simulate("--synthetic", 5, "--target", "0.9", "--model-floor", "1.5")
    assert r.returncode == 2 and "--model-floor" in r.stderr


def test_queue_check_flags(tessera_bin, tmp_path):
    # The plan with queue checks names them in its reasons; with --check-attainment 0 (or no
    # budget) it is the closed form; a target of 1 or more is refused.
    def plan(*args):
        return subprocess.run([str(TESSERA), "plan", "--synthetic", "20", "--seed", "2", "-v",
                               *map(str, args)], capture_output=True, text=True, timeout=120)
    checked, closed, broke = plan(), plan("--check-attainment", 0), plan("--check-budget", 0)
    for r in (checked, closed, broke):
        assert r.returncode == 0, r.stderr
    assert "simulated with the runtime's batching rule" in checked.stdout
    assert "simulated" not in closed.stdout
    assert closed.stdout.split("planned in")[0] == broke.stdout.split("planned in")[0]
    r = plan("--check-attainment", 1.5)
    assert r.returncode == 2 and "--check-attainment" in r.stderr
    # Synthetic GPUs with 4-SM granules: slices in multiples of 4, not all of 8.
    r = plan("--granularity", 4)
    assert r.returncode == 0, r.stderr
    sizes = [float(line.split()[0]) for line in r.stdout.splitlines() if " SMs  " in line]
    assert sizes and all(s % 4 == 0 for s in sizes) and any(s % 8 for s in sizes)
    r = plan("--granularity", 0)
    assert r.returncode == 2 and "--granularity" in r.stderr


def test_bad_scenarios_get_clear_errors(tessera_bin, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"models": [{"name": "a", "rate": 10, "slo_ms": 5,
                                           "synthetic": "resnet18", "arrival": "weekly"}]}))
    r = simulate("-s", bad)
    assert r.returncode == 2
    assert "bad.json.models[0].arrival: unknown arrival process 'weekly'" in r.stderr
    r = simulate("-s", tmp_path / "missing.json")
    assert r.returncode == 3
    r = simulate("--synthetic", 5, "--arrival", "trace")
    assert r.returncode == 2 and "--arrival" in r.stderr
    r = simulate("-s", EXAMPLE, "-p", "slicey")
    assert r.returncode == 2 and "gslice" in r.stderr
    r = simulate("-s", EXAMPLE, "-d", "5", "--warmup", "6")
    assert r.returncode == 2 and "--warmup must be below --duration" in r.stderr
    r = simulate("-s", EXAMPLE, "--batch-buckets", "odd")
    assert r.returncode == 2 and "--batch-buckets" in r.stderr


def test_pow2_buckets_pad_batches_and_are_recorded(tessera_bin, tmp_path):
    # Padding a batch to the next power of two costs time: the same plan and arrivals give
    # a higher p99 with pow2 executables than with one per batch size.
    p99 = {}
    for buckets in ("every", "pow2"):
        out = tmp_path / f"{buckets}.json"
        r = simulate("-s", EXAMPLE, "-d", "10", "--warmup", "2", "--batch-buckets", buckets,
                     "--json", out)
        assert r.returncode == 0, r.stderr
        doc = json.loads(out.read_text())
        assert doc["batch_buckets"] == buckets
        p99[buckets] = doc["policies"]["tessera"]["p99_ms"]
    assert p99["pow2"] > p99["every"]


def test_plot_sim_draws_a_simulate_result(tessera_bin, tmp_path):
    import sys
    out = tmp_path / "sim.json"
    r = simulate("-s", EXAMPLE, "--policy", "all", "-d", "4", "--warmup", "1", "--json", out)
    assert r.returncode == 0, r.stderr
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "plot_sim.py"), str(out), "--out",
                        str(tmp_path / "plots")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    png = tmp_path / "plots" / "sim_attainment.png"
    assert png.stat().st_size > 1000
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "plot_sim.py"), str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "not a tessera simulate" in p.stderr


def test_interference_is_calibrated_from_live_statistics(tessera_bin, tmp_path):
    # The planner is told alpha 0.6 (the scenario's); the simulated GPU has 1.5. The windows'
    # slice samples find 1.5, and predict batch times better than the planner's alpha.
    out = tmp_path / "sim.json"
    r = simulate("-s", EXAMPLE, "-d", "20", "--warmup", "2", "--actual-alpha", "1.5",
                 "--json", out)
    assert r.returncode == 0, r.stderr
    assert "interference from live statistics: alpha" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["actual_interference_alpha"] == 1.5
    fit = doc["policies"]["tessera"]["interference"]
    assert fit["planner_alpha"] == doc["interference_alpha"]
    assert fit["live_samples"] > 20
    assert abs(fit["live_alpha"] - 1.5) < 0.15 * 1.5, fit
    assert fit["live_fit_error"]["mean_abs_rel"] < fit["planner_error"]["mean_abs_rel"]
    bad = tmp_path / "bad.json"
    scenario = json.loads(EXAMPLE.read_text())
    scenario["actual_interference"] = {"alpha": -1}
    bad.write_text(json.dumps(scenario))
    r = simulate("-s", bad)
    assert r.returncode == 2 and "actual_interference.alpha" in r.stderr, r.stderr
    r = simulate("-s", EXAMPLE, "--actual-alpha", "-1")
    assert r.returncode == 2 and "--actual-alpha" in r.stderr
