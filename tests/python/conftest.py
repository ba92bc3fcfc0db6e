"""Shared fixtures: the tessera binary, a generated zoo, and run helpers that compare Tessera's
CPU engine with ONNX Runtime on the same inputs."""
import os
import pathlib
import subprocess
import tempfile

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESSERA = pathlib.Path(os.environ.get("TESSERA_BIN", ROOT / "build" / "bin" / "tessera"))
RTOL = 1e-4  # max|delta| / max|ref|, fp32


@pytest.fixture(scope="session")
def tessera_bin():
    if not TESSERA.exists():
        pytest.fail(f"{TESSERA} not found: build first (scripts/test does)")
    return TESSERA


@pytest.fixture(scope="session")
def zoo_repo(tessera_bin, tmp_path_factory):
    """The full zoo, written once per session (or reused from TESSERA_ZOO)."""
    given = os.environ.get("TESSERA_ZOO")
    if given:
        return pathlib.Path(given)
    out = tmp_path_factory.mktemp("zoo")
    subprocess.run([str(tessera_bin), "zoo", "--out", str(out), "--models", "all"], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def run_tessera(args, feeds, check=True):
    """Runs `tessera infer` with the given feeds (name -> ndarray) and returns
    (outputs dict, CompletedProcess)."""
    with tempfile.TemporaryDirectory() as d:
        cmd = [str(TESSERA), "infer", *args, "--output-dir", f"{d}/out"]
        for name, arr in feeds.items():
            np.save(f"{d}/{name}.npy", arr)
            cmd += ["--input", f"{name}={d}/{name}.npy"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"tessera failed ({proc.returncode}): {proc.stderr}")
        outs = {}
        if proc.returncode == 0:
            for p in pathlib.Path(f"{d}/out").glob("*.npy"):
                outs[p.stem] = np.load(p)
        return outs, proc


def run_ort(model_path, feeds):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def sanitize(name):
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name)


def assert_close(ours, ref, rtol=RTOL, what=""):
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    if ref.dtype == np.bool_ or np.issubdtype(ref.dtype, np.integer):
        np.testing.assert_array_equal(ours, ref, err_msg=what)
        return
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    err = float(np.abs(ours.astype(np.float64) - ref).max()) if ref.size else 0.0
    assert err <= rtol * max(scale, 1e-6), f"{what}: max|delta|={err:.3g}, max|ref|={scale:.3g}"


def compare_with_ort(model_path, feeds, rtol=RTOL):
    ref = run_ort(model_path, feeds)
    ours, _ = run_tessera(["--model-file", str(model_path)], feeds)
    for name, r in ref.items():
        key = sanitize(name)
        assert key in ours, f"output {name} missing from tessera's outputs {list(ours)}"
        assert_close(ours[key], r, rtol, what=f"{pathlib.Path(model_path).name}:{name}")
    return ours, ref
