"""Every zoo model against ONNX Runtime on the same inputs (max|delta|/max|ref| <= 1e-4)."""
import json
import numpy as np
import pytest

from conftest import assert_close, run_ort, run_tessera, sanitize

ZOO = ["resnet18", "resnet50", "mobilenet_v2", "vgg16", "bert_base", "bert_small"]


def feeds_for(model_path, batch, seed=0):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in sess.get_inputs():
        shape = [batch] + list(i.shape[1:])
        if i.type == "tensor(float)":
            feeds[i.name] = rng.uniform(-1, 1, shape).astype(np.float32)
        elif "mask" in i.name:
            m = np.ones(shape, np.int64)
            m[:, shape[1] * 3 // 4:] = 0  # padded tail, so the mask matters
            feeds[i.name] = m
        else:
            feeds[i.name] = rng.integers(0, 8000, shape).astype(np.int64)
    return feeds


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("model", ZOO)
def test_zoo_model_matches_onnxruntime(zoo_repo, model, batch):
    if model == "vgg16" and batch == 2:
        pytest.skip("vgg16 is checked at batch 1 only, to keep CI short")
    path = zoo_repo / model / "1" / "model.onnx"
    feeds = feeds_for(path, batch)
    ref = run_ort(path, feeds)
    ours, proc = run_tessera(["--model-repository", str(zoo_repo), "--model", model], feeds)
    assert f"batch {batch}" in proc.stdout
    for name, r in ref.items():
        assert_close(ours[sanitize(name)], r, what=f"{model}:{name}")


def test_zoo_is_deterministic(tessera_bin, tmp_path):
    import subprocess
    for d in ("a", "b"):
        subprocess.run([str(tessera_bin), "zoo", "--out", str(tmp_path / d), "--models",
                        "bert_small,mobilenet_v2"], check=True, stdout=subprocess.DEVNULL)
    for m in ("bert_small", "mobilenet_v2"):
        a = (tmp_path / "a" / m / "1" / "model.onnx").read_bytes()
        b = (tmp_path / "b" / m / "1" / "model.onnx").read_bytes()
        assert a == b, f"{m} differs between two runs with the same seed"
    subprocess.run([str(tessera_bin), "zoo", "--out", str(tmp_path / "c"), "--models",
                    "bert_small", "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
    assert (tmp_path / "c/bert_small/1/model.onnx").read_bytes() != \
        (tmp_path / "a/bert_small/1/model.onnx").read_bytes()


def test_zoo_repository_layout(zoo_repo):
    for m in ZOO:
        cfg = (zoo_repo / m / "config.pbtxt").read_text()
        assert f'name: "{m}"' in cfg
        assert ("max_batch_size: 64" if m == "tiny_mlp" else "max_batch_size: 8") in cfg
        assert "dynamic_batching" in cfg
        assert (zoo_repo / m / "1" / "model.onnx").stat().st_size > 1_000_000


@pytest.mark.parametrize("model", ["bert_small", "mobilenet_v2"])
def test_cuda_lowering_on_the_host_matches_onnxruntime(zoo_repo, model):
    # --engine cuda-host runs the CUDA backend's lowered program on the host interpreter: the
    # GPU path's index arithmetic, GEMM mapping and arena plan, checked on machines without a GPU
    # (with a padded attention mask for BERT, which the C++ tests do not use).
    path = zoo_repo / model / "1" / "model.onnx"
    feeds = feeds_for(path, 2)
    ref = run_ort(path, feeds)
    ours, proc = run_tessera(["--model-repository", str(zoo_repo), "--model", model,
                              "--engine", "cuda-host"], feeds)
    assert "engine     cuda-host" in proc.stdout
    for name, r in ref.items():
        assert_close(ours[sanitize(name)], r, what=f"{model}:{name} (cuda-host)")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_narrow_cuda_lowering_stays_within_1e_2_of_onnxruntime_in_half_the_bytes(
        zoo_repo, precision, tmp_path):
    # fp16 / bf16 store weights and activations narrow (the residual stream and the outputs stay
    # FP32): the tolerance against ONNX Runtime's FP32 holds with a padded attention
    # mask, and the reported bytes shrink.
    path = zoo_repo / "bert_small" / "1" / "model.onnx"
    feeds = feeds_for(path, 2)
    ref = run_ort(path, feeds)
    sizes = {}
    for p in ["fp32", precision]:
        ours, _ = run_tessera(["--model-repository", str(zoo_repo), "--model", "bert_small",
                               "--engine", "cuda-host", "--precision", p,
                               "--json", str(tmp_path / f"{p}.json")], feeds)
        for name, r in ref.items():
            assert_close(ours[sanitize(name)], r, rtol=1e-4 if p == "fp32" else 1e-2,
                         what=f"bert_small:{name} ({p})")
        sizes[p] = json.loads((tmp_path / f"{p}.json").read_text())
    narrow, wide = sizes[precision], sizes["fp32"]
    assert narrow["weight_bytes"] < 0.55 * wide["weight_bytes"]
    assert narrow["min_bytes"] < 0.55 * wide["min_bytes"]  # the roofline floor's bytes
    assert narrow["activation_bytes_no_reuse"] < 0.75 * wide["activation_bytes_no_reuse"]


def test_a_model_with_external_data_serves_from_a_repository(zoo_repo, tmp_path):
    """Weights kept as ONNX external data (what torch.onnx.export writes by default), in a file
    beside model.onnx and in a subfolder: read from there, answers as ONNX Runtime's."""
    import shutil
    import onnx
    repo = tmp_path / "repo"
    (repo / "mobilenet_v2" / "1").mkdir(parents=True)
    shutil.copy(zoo_repo / "mobilenet_v2" / "config.pbtxt", repo / "mobilenet_v2")
    m = onnx.load(str(zoo_repo / "mobilenet_v2" / "1" / "model.onnx"))
    path = repo / "mobilenet_v2" / "1" / "model.onnx"
    (path.parent / "weights").mkdir()
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights/model.onnx.data", size_threshold=0)
    assert (path.parent / "weights" / "model.onnx.data").stat().st_size > path.stat().st_size
    feeds = feeds_for(path, 2)
    ref = run_ort(path, feeds)
    ours, _ = run_tessera(["--model-repository", str(repo), "--model", "mobilenet_v2"], feeds)
    for name, r in ref.items():
        assert_close(ours[sanitize(name)], r, what=f"mobilenet_v2 (external data):{name}")
    # The data file gone: the load names the tensor and the file it looked for.
    (path.parent / "weights" / "model.onnx.data").unlink()
    _, proc = run_tessera(["--model-repository", str(repo), "--model", "mobilenet_v2"], feeds,
                          check=False)
    assert proc.returncode != 0
    assert "external data file" in proc.stderr and "model.onnx.data" in proc.stderr, proc.stderr
