"""`tessera bench` against a real `tessera serve` (and `tessera sink`): every transport sends what
it says it sent (checked against the server's own statistics), results files have their keys,
rejections are told apart from errors, sweeps find a load, bad scenarios get clear errors."""
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import ROOT
from server_util import TESSERA, TesseraServer, write_zoo


@pytest.fixture(scope="module")
def repo(tessera_bin, tmp_path_factory):
    return write_zoo(tmp_path_factory.mktemp("bench_repo"), "tiny_mlp,bert_small")


@pytest.fixture(scope="module")
def server(repo):
    s = TesseraServer(repo)
    yield s
    assert s.stop() == 0, s.output()


def bench(*args, timeout=120):
    return subprocess.run([str(TESSERA), "bench", "-q", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def success_count(server, model):
    with urllib.request.urlopen(f"http://{server.http}/v2/models/{model}/stats") as r:
        stats = json.load(r)["model_stats"]
    return sum(s["inference_stats"]["success"]["count"] for s in stats)


def write_scenario(tmp_path, **fields):
    doc = {"name": "t", "duration_s": 2, "warmup_s": 0, "models": [
        {"name": "tiny_mlp", "rate": 100, "arrival": "constant", "slo_ms": 1000},
        {"name": "bert_small", "rate": 5, "arrival": "constant", "slo_ms": 5000}]}
    doc.update(fields)
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("protocol,extra", [("grpc", []), ("http", []), ("http", ["--json-tensors"]),
                                            ("grpc", ["--shm"]), ("http", ["--shm"]),
                                            ("grpc", ["--grpc-stream"]),
                                            ("grpc", ["--grpc-stream", "--shm"])])
def test_every_transport_sends_what_it_reports(server, tmp_path, protocol, extra):
    scenario = write_scenario(tmp_path)
    before = {m: success_count(server, m) for m in ("tiny_mlp", "bert_small")}
    url = server.grpc if protocol == "grpc" else server.http
    out = tmp_path / "r.json"
    p = bench("--scenario", scenario, "-i", protocol, "-u", url, "--json", out, *extra)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(out.read_text())
    for key in ("machine", "commit", "date", "scenario", "run"):
        assert key in doc
    assert doc["scenario"]["protocol"] == protocol
    models = {m["name"]: m for m in doc["run"]["models"]}
    # Constant arrivals over 2 s with no warm-up: exactly rate x duration requests.
    assert models["tiny_mlp"]["sent"] == 200 and models["bert_small"]["sent"] == 10
    for name, m in models.items():
        for key in ("goodput_rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "slo_attainment",
                    "sent", "ok", "rejected", "errors", "latency_cdf_ms", "timeline"):
            assert key in m, key
        assert m["ok"] == m["sent"] and m["errors"] == 0 and m["rejected"] == 0, m
        assert 0 < m["p50_ms"] <= m["p99_ms"] <= m["max_ms"]
        assert m["goodput_rps"] == pytest.approx(m["within_slo"] / 2)
        # The server saw exactly the requests the generator counted.
        assert success_count(server, name) - before[name] == m["sent"]
    total = doc["run"]["total"]
    assert total["sent"] == 210 and total["ok"] == 210
    assert "tiny_mlp" in p.stdout and "SLO att." in p.stdout


def test_progress_line_and_single_model_flags(server):
    p = subprocess.run([str(TESSERA), "bench", "-m", "tiny_mlp", "--rate", "50", "-d", "6",
                        "--warmup", "0", "-u", server.grpc], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert "offered 50 req/s" in p.stderr and "SLO attainment" in p.stderr, p.stderr


def test_rejections_are_not_errors(repo, tmp_path):
    s = TesseraServer(repo, "--max-queue-size", "1")
    try:
        out = tmp_path / "r.json"
        p = bench("-m", "bert_small", "--rate", "400", "-d", "1", "--warmup", "0", "-u", s.http,
                  "-i", "http", "--slo-ms", "1000", "--json", out)
        assert p.returncode == 0, p.stdout + p.stderr
        m = json.loads(out.read_text())["run"]["models"][0]
        assert m["rejected"] > 0 and m["errors"] == 0, m
        assert m["errors_by_kind"].get("http_429", 0) == m["rejected"]
        assert m["ok"] + m["rejected"] == m["sent"]
        assert m["slo_attainment"] < 1.0
        assert "429" in p.stdout  # the first error is reported
    finally:
        assert s.stop() == 0


def test_sweep_reports_the_highest_load_that_held(server, tmp_path):
    out = tmp_path / "sweep.json"
    p = bench("-m", "tiny_mlp", "--rate", "50", "--slo-ms", "2000", "-d", "1", "--warmup", "0",
              "-u", server.grpc, "--sweep", "--sweep-factor", "2", "--sweep-max-steps", "2",
              "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    sw = json.loads(out.read_text())["sweep"]
    assert [s["rate_scale"] for s in sw["steps"]] == [1, 2]
    assert all(s["held"] for s in sw["steps"])
    assert sw["best"]["rate_scale"] == 2 and sw["offered_rps"] == pytest.approx(100)
    assert sw["goodput_rps"] > 0
    assert "highest load that held" in p.stdout


def test_sweep_that_never_holds_exits_4(server):
    # An SLO of 1 µs cannot be met by any answer.
    p = bench("-m", "tiny_mlp", "--rate", "20", "--slo-ms", "0.001", "-d", "0.5", "--warmup",
              "0", "-u", server.grpc, "--sweep", "--sweep-max-steps", "1")
    assert p.returncode == 4, p.stdout + p.stderr
    assert "lower --sweep-start" in p.stdout


@pytest.mark.parametrize("body,expect", [
    ("{\"models\": [{\"name\": \"tiny_mlp\", \"rate\": -1, \"slo_ms\": 5}]}",
     "models[0].rate: expected a number > 0, got number -1"),
    ("{\"models\": [{\"name\": \"tiny_mlp\", \"rate\": 1}]}", "models[0]: 'slo_ms'"),
    ("{\"models\": [], \"speed\": 1}", "unknown field 'speed'"),
    ("not json", "not valid JSON"),
])
def test_bad_scenarios_name_the_field(tmp_path, body, expect):
    path = tmp_path / "bad.json"
    path.write_text(body)
    p = bench("--scenario", path)
    assert p.returncode == 2, p.stderr
    assert expect in p.stderr and "INVALID_ARGUMENT" in p.stderr, p.stderr


def test_missing_things_get_clear_errors(server, tmp_path):
    p = bench("--scenario", tmp_path / "nope.json")
    assert p.returncode == 3 and "cannot read scenario file" in p.stderr, p.stderr
    p = bench("-m", "no_such_model", "--rate", "1", "-u", server.grpc)
    assert p.returncode == 3 and "no_such_model" in p.stderr, p.stderr
    p = bench("-m", "no_such_model", "--rate", "1", "-u", server.http, "-i", "http")
    assert p.returncode == 3 and "no_such_model" in p.stderr, p.stderr
    # A shape for an input the model does not have is refused before anything is sent.
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"duration_s": 0.5, "warmup_s": 0, "models": [
        {"name": "tiny_mlp", "rate": 10, "slo_ms": 100, "inputs": {"nope": [3]}}]}))
    p = bench("--scenario", path, "-u", server.grpc)
    assert p.returncode == 2 and "no such input" in p.stderr, p.stderr
    p = bench("--demo", "--model", "x")
    assert p.returncode == 2 and "exactly one of" in p.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_is_an_error_not_a_hang(tmp_path):
    port = free_port()
    p = bench("-m", "m", "--rate", "1", "-u", f"localhost:{port}", "-i", "http")
    assert p.returncode == 1 and "cannot connect" in p.stderr, p.stderr
    p = bench("-m", "m", "--rate", "1", "-u", f"localhost:{port}", timeout=60)
    assert p.returncode == 1 and "UNAVAILABLE" in p.stderr, p.stderr


def test_against_the_sink(tmp_path):
    hp, gp = free_port(), free_port()
    sink = subprocess.Popen([str(TESSERA), "sink", "--http-port", str(hp), "--grpc-port", str(gp)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "tessera sink" in sink.stdout.readline()
        for proto, port, extra in (("http", hp, []), ("grpc", gp, []),
                                   ("grpc", gp, ["--grpc-stream"])):
            out = tmp_path / f"{proto}.json"
            p = bench("-m", "anything", "--rate", "2000", "--arrival", "constant", "-d", "1",
                      "--warmup", "0", "-i", proto, "-u", f"localhost:{port}", "--json", out,
                      *extra)
            assert p.returncode == 0, p.stdout + p.stderr
            m = json.loads(out.read_text())["run"]["models"][0]
            assert m["sent"] == 2000 and m["ok"] == 2000, m
    finally:
        sink.terminate()
        assert sink.wait(30) == 0


def test_plot_makes_pngs(server, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "r.json"
    p = bench("--scenario", write_scenario(tmp_path, duration_s=1), "-u", server.grpc,
              "--json", out)
    assert p.returncode == 0, p.stderr
    sweep = tmp_path / "s.json"
    p = bench("-m", "tiny_mlp", "--rate", "20", "-d", "0.5", "--warmup", "0", "-u", server.grpc,
              "--sweep", "--sweep-max-steps", "2", "--json", sweep)
    assert p.returncode == 0, p.stderr
    plots = tmp_path / "plots"
    q = subprocess.run([sys.executable, str(ROOT / "bench" / "plot.py"), str(out), str(sweep),
                        "--out", str(plots)], capture_output=True, text=True, timeout=120)
    assert q.returncode == 0, q.stdout + q.stderr
    names = sorted(f.name for f in plots.iterdir())
    assert "latency_cdf.png" in names and "attainment_over_time.png" in names
    assert "goodput_vs_load.png" in names
    for f in plots.iterdir():
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("protocol,extra", [("grpc", []), ("http", []), ("grpc", ["--grpc-stream"])])
def test_unanswered_requests_are_counted_after_the_drain_timeout(server, tmp_path, protocol,
                                                                  extra):
    # bert_small cannot keep up with 1500 req/s on a CPU (it answers a few hundred a second in
    # batches of 8 on two cores), and the run waits only 50 ms for answers after the last send:
    # what is still out is "no_response", not lost.
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"duration_s": 0.4, "warmup_s": 0, "drain_s": 0.05, "models": [
        {"name": "bert_small", "rate": 1500, "arrival": "constant", "slo_ms": 10000}]}))
    url = server.grpc if protocol == "grpc" else server.http
    out = tmp_path / "r.json"
    p = bench("--scenario", path, "-i", protocol, "-u", url, "--json", out, *extra)
    assert p.returncode == 0, p.stdout + p.stderr
    m = json.loads(out.read_text())["run"]["models"][0]
    assert m["sent"] == 600
    assert m["unanswered"] > 0 and m["errors_by_kind"]["no_response"] == m["unanswered"], m
    assert m["ok"] + m["rejected"] + m["errors"] == m["sent"]  # errors include the unanswered
    # The server is fine afterwards.
    p = bench("-m", "tiny_mlp", "--rate", "20", "-d", "0.5", "--warmup", "0", "-u", server.grpc)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("scenario", sorted((ROOT / "bench" / "scenarios").glob("*.json")),
                         ids=lambda p: p.name)
def test_example_scenarios_parse(scenario):
    # A closed port: the scenario parses (exit 2 would be a scenario error) and then the
    # connection fails (exit 1).
    p = bench("--scenario", scenario, "-i", "http", "-u", f"localhost:{free_port()}")
    assert p.returncode == 1 and "cannot connect" in p.stderr, p.stderr


def test_grpc_stream_needs_grpc(server):
    p = bench("-m", "tiny_mlp", "--rate", "10", "-d", "0.2", "-i", "http", "-u", server.http,
              "--grpc-stream")
    assert p.returncode == 2 and "--grpc-stream needs the grpc protocol" in p.stderr
