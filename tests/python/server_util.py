"""A real `tessera serve` process for tests: free ports, wait until ready, stop with a signal."""
import os
import pathlib
import re
import signal
import subprocess
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
TESSERA = pathlib.Path(os.environ.get("TESSERA_BIN", ROOT / "build" / "bin" / "tessera"))


def write_zoo(out, models):
    """Writes the named zoo models (comma-separated) into the repository folder `out`."""
    subprocess.run([str(TESSERA), "zoo", "--out", str(out), "--models", models], check=True,
                   stdout=subprocess.DEVNULL)
    return out


class TesseraServer:
    """Starts `tessera serve` on ports the OS picks and parses them from its output."""

    def __init__(self, repo, *extra, env=None, wait_ready=True, timeout=180):
        cmd = [str(TESSERA), "serve", "--model-repository", str(repo), "--http-port", "0",
               "--grpc-port", "0", "--metrics-port", "0", *map(str, extra)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, **(env or {})})
        self.lines = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.http_port = int(self._wait_for(r"HTTP\s+http://[^:]+:(\d+)/v2", timeout))
        self.grpc_port = int(self._wait_for(r"gRPC\s+[^:]+:(\d+)", timeout))
        self.metrics_port = int(self._wait_for(r"metrics\s+http://[^:]+:(\d+)/metrics", timeout))
        if wait_ready:
            self._wait_for(r"^(ready|serving;)", timeout)

    def _read(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self.lines.append(None)  # EOF
            self._cv.notify_all()

    def _wait_for(self, pattern, timeout):
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        seen = 0
        with self._cv:
            while True:
                while seen < len(self.lines):
                    line = self.lines[seen]
                    seen += 1
                    if line is None:
                        raise RuntimeError("tessera serve exited:\n" + self.output())
                    m = rx.search(line)
                    if m:
                        return m.group(1) if m.groups() else line
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"no line matching {pattern!r}:\n" + self.output())
                self._cv.wait(left)

    def output(self):
        with self._cv:
            return "\n".join(l for l in self.lines if l is not None)

    @property
    def http(self):
        return f"localhost:{self.http_port}"

    @property
    def grpc(self):
        return f"localhost:{self.grpc_port}"

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("tessera serve did not stop in time:\n" + self.output())
        return self.proc.returncode

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0


def write_identity_model(repo, name, dtypes, max_batch=8, extra_config=""):
    """A model whose outputs are its inputs (one Identity per datatype), to test every KServe
    datatype end to end. `dtypes`: KServe names."""
    import onnx
    from onnx import TensorProto, helper
    onnx_type = {"BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8,
                 "UINT16": TensorProto.UINT16, "UINT32": TensorProto.UINT32,
                 "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
                 "INT16": TensorProto.INT16, "INT32": TensorProto.INT32,
                 "INT64": TensorProto.INT64, "FP16": TensorProto.FLOAT16,
                 "BF16": TensorProto.BFLOAT16, "FP32": TensorProto.FLOAT,
                 "FP64": TensorProto.DOUBLE}
    nodes, ins, outs, cfg_in, cfg_out = [], [], [], [], []
    for dt in dtypes:
        i, o = f"in_{dt.lower()}", f"out_{dt.lower()}"
        nodes.append(helper.make_node("Identity", [i], [o]))
        ins.append(helper.make_tensor_value_info(i, onnx_type[dt], ["batch", 4]))
        outs.append(helper.make_tensor_value_info(o, onnx_type[dt], ["batch", 4]))
        cfg_in.append(f'{{ name: "{i}" data_type: TYPE_{dt} dims: [4] }}')
        cfg_out.append(f'{{ name: "{o}" data_type: TYPE_{dt} dims: [4] }}')
    g = helper.make_graph(nodes, name, ins, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    d = pathlib.Path(repo) / name
    (d / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(m, d / "1" / "model.onnx")
    (d / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {max_batch}\n'
        f"input [ {', '.join(cfg_in)} ]\noutput [ {', '.join(cfg_out)} ]\n{extra_config}\n")


NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
         "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
         "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
