"""`tessera simulate` from the benchmark scripts: runs it quietly with the given arguments and
returns its JSON results (what `--json` writes)."""
import json
import pathlib
import subprocess
import tempfile


def simulate(tessera, args):
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "s.json"
        subprocess.run([str(tessera), "simulate", "-q", "--json", str(out), *map(str, args)],
                       check=True, capture_output=True, text=True)
        return json.loads(out.read_text())
