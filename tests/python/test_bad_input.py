"""Bad models and bad inputs through the real CLI: a clear error and a non-zero exit, never a
crash (a negative return code means a signal)."""
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import TESSERA, run_tessera


def relu_model(path, dtype=TensorProto.FLOAT, shape=(1, 4)):
    x = helper.make_tensor_value_info("x", dtype, ["batch", *shape[1:]])
    y = helper.make_tensor_value_info("y", dtype, None)
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def infer(*args):
    return subprocess.run([str(TESSERA), "infer", *map(str, args)], capture_output=True, text=True)


def assert_clean_failure(proc, *needles):
    assert proc.returncode > 0, f"expected a clean failure, got {proc.returncode}: {proc.stderr}"
    assert proc.stderr.startswith("error: "), proc.stderr
    for n in needles:
        assert n in proc.stderr, f"{n!r} not in {proc.stderr!r}"


def test_truncated_model(tmp_path):
    good = relu_model(tmp_path / "m.onnx").read_bytes()
    (tmp_path / "t.onnx").write_bytes(good[: len(good) // 2])
    assert_clean_failure(infer("--model-file", tmp_path / "t.onnx"), "INVALID_ARGUMENT")


def test_random_bytes(tmp_path):
    (tmp_path / "r.onnx").write_bytes(np.random.default_rng(1).bytes(4096))
    assert_clean_failure(infer("--model-file", tmp_path / "r.onnx"))


def test_missing_file(tmp_path):
    proc = infer("--model-file", tmp_path / "nope.onnx")
    assert_clean_failure(proc, "NOT_FOUND", "nope.onnx")


def test_unknown_op_names_op_and_node(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("Unique", ["x"], ["y"], name="the_unique")
    m = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "e.onnx")
    assert_clean_failure(infer("--model-file", tmp_path / "e.onnx"), "UNIMPLEMENTED", "Unique",
                         "the_unique")


def test_missing_initializer(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("Add", ["x", "missing_bias"], ["y"])
    m = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "m.onnx")
    assert_clean_failure(infer("--model-file", tmp_path / "m.onnx"), "missing_bias")


def test_inconsistent_shapes(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.zeros((4, 5), np.float32), "w")
    m = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                                            [x], [y], [w]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "m.onnx")
    assert_clean_failure(infer("--model-file", tmp_path / "m.onnx"), "INVALID_ARGUMENT",
                         "inner dimensions")


def test_wrong_input_dtype(tmp_path):
    path = relu_model(tmp_path / "m.onnx")
    _, proc = run_tessera(["--model-file", str(path)], {"x": np.zeros((1, 4), np.int64)},
                          check=False)
    assert_clean_failure(proc, "'x'", "FP32", "INT64")


def test_wrong_input_shape(tmp_path):
    path = relu_model(tmp_path / "m.onnx")
    _, proc = run_tessera(["--model-file", str(path)], {"x": np.zeros((1, 5), np.float32)},
                          check=False)
    assert_clean_failure(proc, "INVALID_ARGUMENT", "'x'")


def test_corrupt_npy(tmp_path):
    path = relu_model(tmp_path / "m.onnx")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    assert_clean_failure(infer("--model-file", path, "--input", f"x={tmp_path / 'bad.npy'}"),
                         "bad.npy")


def test_unknown_model_lists_available(zoo_repo):
    proc = infer("--model-repository", zoo_repo, "--model", "resnet9000")
    assert_clean_failure(proc, "NOT_FOUND", "resnet9000", "resnet50")
    assert proc.returncode == 3


def test_batch_over_max_batch_size(zoo_repo):
    assert_clean_failure(infer("--model-repository", zoo_repo, "--model", "bert_small", "--batch",
                               "64"), "max_batch_size 8")


def test_token_id_out_of_vocabulary(zoo_repo):
    feeds = {"input_ids": np.full((1, 128), 99999, np.int64),
             "attention_mask": np.ones((1, 128), np.int64)}
    _, proc = run_tessera(["--model-repository", str(zoo_repo), "--model", "bert_small"], feeds,
                          check=False)
    assert_clean_failure(proc, "Gather", "99999", "out of range")


@pytest.mark.parametrize("args", [["--batch", "0"], ["--batch", "-3"]])
def test_bad_batch(tmp_path, args):
    path = relu_model(tmp_path / "m.onnx")
    assert_clean_failure(infer("--model-file", path, *args), "batch")


def test_cli_usage_errors():
    proc = subprocess.run([str(TESSERA), "infer"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--model" in proc.stderr
    proc = subprocess.run([str(TESSERA), "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2
    # An option value the parser refuses is a usage error too (exit 2, not CLI11's 100+).
    proc = subprocess.run([str(TESSERA), "bench", "--grpc-threads", "0"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and "--grpc-threads" in proc.stderr
    proc = subprocess.run([str(TESSERA), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "zoo" in proc.stdout and "infer" in proc.stdout


def test_infer_reports_latency_memory_and_json(zoo_repo, tmp_path):
    proc = infer("--model-repository", zoo_repo, "--model", "mobilenet_v2", "--iterations", "3",
                 "--json", tmp_path / "r.json", "--profile")
    assert proc.returncode == 0, proc.stderr
    assert "activations" in proc.stdout and "p50" in proc.stdout and "profile" in proc.stdout
    import json
    r = json.loads((tmp_path / "r.json").read_text())
    assert len(r["latency_ms"]) == 3 and r["activation_bytes"] > 0


@pytest.mark.parametrize("op,extra", [
    ("GatherND", []),
    ("GatherElements", []),
    ("ScatterND", ["u"]),
])
def test_an_index_out_of_range_is_a_clear_error(op, extra, tmp_path):
    """Indices arrive at run time; one past the data's end fails that run, naming it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])
    i_shape = [1, 1] if op != "GatherElements" else [1, 4]
    i = helper.make_tensor_value_info("i", TensorProto.INT64, i_shape)
    ins = [x, i]
    feeds = {"x": np.zeros((3, 4), np.float32), "i": np.full(i_shape, 7, np.int64)}
    if extra:
        ins.append(helper.make_tensor_value_info("u", TensorProto.FLOAT, [1, 4]))
        feeds["u"] = np.ones((1, 4), np.float32)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["x", "i", *extra], ["y"], name="the_op")
    m = helper.make_model(helper.make_graph([node], "g", ins, [y]),
                          opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "m.onnx")
    _, proc = run_tessera(["--model-file", str(tmp_path / "m.onnx")], feeds, check=False)
    assert_clean_failure(proc, "INVALID_ARGUMENT", "the_op", "index 7 out of range")
