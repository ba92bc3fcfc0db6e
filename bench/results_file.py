"""Where the planner benchmarks write their results: bench/results/<date>-<name>.json unless the
caller gives a path, with the date of the run (UTC) from the result itself."""
import json
import pathlib

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def write(name, result, out=None):
    path = pathlib.Path(out) if out else RESULTS / f"{result['date'][:10]}-{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return path
