"""Writes the fuzz seed corpus: every one-node model of the op tests, serialized."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_ops_vs_ort import CASES, build  # noqa: E402

out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
for i, c in enumerate(CASES):
    op, inputs, attrs, outs, out_types, opset = c.values
    (out / f"seed{i:03d}_{op}.onnx").write_bytes(build(op, inputs, attrs, outs, out_types, opset).SerializeToString())
print(f"wrote {len(CASES)} seed models to {out}")
