"""Bad input to a running server: every case gets a clear error with the right HTTP status /
gRPC code, and the server keeps serving everything else."""
import json
import socket
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.grpc import service_pb2, service_pb2_grpc

from server_util import TesseraServer, write_zoo

LIMIT = 1 << 20  # --max-request-bytes for this module's server


@pytest.fixture(scope="module")
def server(tessera_bin, tmp_path_factory):
    repo = write_zoo(tmp_path_factory.mktemp("bad_input_repo"), "tiny_mlp")
    cfg = repo / "tiny_mlp" / "config.pbtxt"
    text = cfg.read_text().replace("dynamic_batching {\n}", "")
    cfg.write_text(text + "dynamic_batching { priority_levels: 2 default_priority_level: 1 }\n")
    s = TesseraServer(repo, "--max-request-bytes", LIMIT)
    yield s
    assert s.stop() == 0, s.output()


def post(server, path, body, headers=None):
    """POST; returns (status, parsed JSON or raw bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{server.http}{path}", data=data, method="POST",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw[:1] == b"{" else raw


def good_body(rows=1):
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 16],
                        "data": [0.25] * (16 * rows)}]}


def assert_error(status, body, want_status, *fragments):
    assert status == want_status, (status, body)
    assert isinstance(body, dict) and "error" in body, body
    for f in fragments:
        assert f in body["error"], (f, body["error"])


def assert_still_serving(server):
    status, body = post(server, "/v2/models/tiny_mlp/infer", good_body())
    assert status == 200 and body["outputs"][0]["shape"] == [1, 16], body


INFER = "/v2/models/tiny_mlp/infer"


@pytest.mark.parametrize("body,status,fragments", [
    (b"{not json", 400, ["malformed"]),
    (b"[1, 2]", 400, ["JSON object"]),
    ({}, 400, ["inputs"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16]}]}, 400, ["no \"data\""]),
    ({"inputs": [{"name": "nope", "datatype": "FP32", "shape": [1, 16], "data": [0] * 16}]},
     400, ["no input 'nope'", "input"]),
    ({"inputs": [{"name": "input", "datatype": "INT64", "shape": [1, 16], "data": [0] * 16}]},
     400, ["must be FP32", "INT64"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 15], "data": [0] * 15}]},
     400, ["shape [-1,16]", "[1,15]"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16], "data": [0] * 15}]},
     400, ["16 elements", "15"]),
    # A huge claimed shape with little data: refused before anything is allocated (fuzzer find).
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [222222222, 16], "data": [0] * 16}]},
     400, ["3555555552 elements, data has 16"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16], "data": ["x"] * 16}]},
     400, ["must be a number"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [100, 16],
                  "data": [0] * 1600}]}, 400, ["batch size 100", "1 to 64"]),
    ({"inputs": [{"name": "input", "datatype": "FP99", "shape": [1, 16], "data": [0] * 16}]},
     400, ["FP99"]),
    ({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1, 16], "data": ["a"] * 16}]},
     501, ["BYTES"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, -16], "data": [0] * 16}]},
     400, ["non-negative"]),
    ({**good_body(), "parameters": {"priority": 9}}, 400, ["priority 9", "2 levels"]),
    ({**good_body(), "parameters": {"timeout": -1}}, 400, ["timeout"]),
    ({**good_body(), "outputs": [{"name": "nope"}]}, 400, ["no output 'nope'"]),
    ({**good_body(), "outputs": [{"name": "output_out", "parameters": {"classification": 3}}]},
     501, ["classification"]),
    ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16],
                  "parameters": {"shared_memory_region": "ghost",
                                 "shared_memory_byte_size": 64}}]}, 404, ["ghost"]),
])
def test_bad_json_requests_get_clear_errors(server, body, status, fragments):
    code, resp = post(server, INFER, body)
    assert_error(code, resp, status, *fragments)
    assert_still_serving(server)


def test_binary_sizes_are_checked(server):
    data = np.zeros((1, 16), np.float32).tobytes()
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16],
                                   "parameters": {"binary_data_size": len(data)}}]}).encode()
    hdr = {"Inference-Header-Content-Length": str(len(head))}
    code, resp = post(server, INFER, head + data[:-4], hdr)
    assert_error(code, resp, 400, "only 60 bytes follow")
    code, resp = post(server, INFER, head + data + b"xx", hdr)
    assert_error(code, resp, 400, "2 bytes after the JSON header")
    code, resp = post(server, INFER, head + data, {"Inference-Header-Content-Length": "99999"})
    assert_error(code, resp, 400, "Inference-Header-Content-Length")
    wrong = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16],
                                    "parameters": {"binary_data_size": 8}}]}).encode()
    code, resp = post(server, INFER, wrong + data[:8],
                      {"Inference-Header-Content-Length": str(len(wrong))})
    assert_error(code, resp, 400, "needs 64 bytes, got 8")
    assert_still_serving(server)


def test_unknown_models_versions_and_endpoints(server):
    assert_error(*post(server, "/v2/models/nope/infer", good_body()), 404, "unknown model 'nope'")
    assert_error(*post(server, "/v2/models/tiny_mlp/versions/7/infer", good_body()), 404,
                 "no version 7")
    assert_error(*post(server, "/v2/models/tiny_mlp/versions/x/infer", good_body()), 400,
                 "not a positive integer")
    assert_error(*post(server, "/v2/nothing/here", {}), 404, "no endpoint")
    assert_error(*post(server, "/v1/models", {}), 404, "/v2")
    try:
        urllib.request.urlopen(f"http://{server.http}/v2/models/tiny_mlp/infer")
        raise AssertionError("GET on infer was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 405 and "POST" in e.headers["Allow"]
    assert_still_serving(server)


def test_oversized_body_gets_a_json_413_before_it_is_read(server):
    rows = LIMIT // 64 + 10  # > LIMIT bytes of JSON
    code, resp = post(server, INFER, {"inputs": [{"name": "input", "datatype": "FP32",
                                                  "shape": [rows, 16],
                                                  "data": [0.5] * (rows * 16)}]})
    assert_error(code, resp, 413, "exceeds the server's limit", str(LIMIT))
    assert_still_serving(server)


def test_garbage_on_the_socket_gets_400_and_closes(server):
    with socket.create_connection(("localhost", server.http_port), timeout=5) as s:
        s.sendall(b"HELLO THERE\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert b"malformed HTTP request" in reply
    assert_still_serving(server)


def test_shared_memory_registration_errors(server):
    c = th.InferenceServerClient(server.http)
    with pytest.raises(Exception, match="cannot open shared memory key"):
        c.register_system_shared_memory("r", "/tessera_no_such_key", 64)
    import tritonclient.utils.shared_memory as shm
    h = shm.create_shared_memory_region("small", "/tessera_small_region", 64)
    try:
        with pytest.raises(Exception, match="does not fit"):
            c.register_system_shared_memory("small", "/tessera_small_region", 128)
        c.register_system_shared_memory("small", "/tessera_small_region", 64)
        with pytest.raises(Exception, match="already registered"):
            c.register_system_shared_memory("small", "/tessera_small_region", 64)
        i = th.InferInput("input", [1, 16], "FP32")
        i.set_shared_memory("small", 64, offset=8)  # [8, 72) of 64 bytes
        with pytest.raises(Exception, match="outside the registered 64 bytes"):
            c.infer("tiny_mlp", [i])
    finally:
        c.unregister_system_shared_memory("small")
        shm.destroy_shared_memory_region(h)
    assert_still_serving(server)


def test_grpc_errors_carry_the_right_codes(server):
    ch = grpc.insecure_channel(server.grpc, options=[
        ("grpc.max_send_message_length", 8 << 20)])
    stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)

    def call(req):
        try:
            stub.ModelInfer(req)
        except grpc.RpcError as e:
            return e.code(), e.details()
        return grpc.StatusCode.OK, ""

    def req(model="tiny_mlp", shape=(1, 16), dtype="FP32", raw=None, name="input"):
        r = service_pb2.ModelInferRequest(model_name=model)
        t = r.inputs.add(name=name, datatype=dtype)
        t.shape.extend(shape)
        r.raw_input_contents.append(raw if raw is not None else
                                    np.zeros(shape, np.float32).tobytes())
        return r

    code, msg = call(req(model="nope"))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in msg
    code, msg = call(req(shape=(1, 15)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "[-1,16]" in msg
    code, msg = call(req(raw=b"\0" * 12))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "needs 64 bytes, got 12" in msg
    code, msg = call(req(dtype="INT32"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    big = req(shape=(64, 16), raw=b"\0" * (LIMIT + 16))
    code, msg = call(big)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, msg)
    c = tg.InferenceServerClient(server.grpc)
    assert c.is_server_live()
    i = tg.InferInput("input", [1, 16], "FP32")
    i.set_data_from_numpy(np.ones((1, 16), np.float32))
    assert c.infer("tiny_mlp", [i]).as_numpy("output_out").shape == (1, 16)
