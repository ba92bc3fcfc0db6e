"""bench/gpu_slices.py's plumbing (server per sharing mode, scenario, sweep, live slice changes
in SMs under load, result parsing) in its --dry-run form on an emulated GPU: the benchmark itself
runs on a GPU machine, where nothing else would catch a broken script first."""
import json
import subprocess
import sys

from server_util import ROOT


def test_the_gpu_slices_benchmark_runs_end_to_end_on_the_cpu(tessera_bin, tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_slices.py"), "--dry-run",
                        "--tessera", str(tessera_bin), "--only", "isolation,resize,replicas",
                        "--duration", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["dry_run"] is True and res["benchmark"] == "gpu-slices"
    for sharing in ("green", "mps", "streams"):
        iso = res["isolation"][sharing]
        assert iso["p99_alone_ms"] > 0 and iso["p99_with_neighbour_ms"] > 0
    rz = res["resize"]
    assert rz["failed"] == 0 and rz["requests"] > 0
    assert [c["sms"] for c in rz["changes"]] == [32, 16]
    assert all(c["resize_ms"] > 0 for c in rz["changes"]), rz
    rp = res["replicas"]
    assert rp["failed"] == 0 and rp["requests"] > 0, rp
    assert [c["instances"] for c in rp["calls"]] == [[0, 1], [1]], rp
