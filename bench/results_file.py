"""What every benchmark records with its results: the machine and the commit, and where the
results go: bench/results/<date>-<name>.json unless the caller gives a path, with the date of the
run (UTC) from the result itself."""
import json
import os
import pathlib
import platform
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def machine(**extra):
    """CPU model, core count and kernel, plus anything the caller adds (library versions)."""
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), **extra}


def commit():
    """The checked-out commit, with -dirty when the tree has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return head + ("-dirty" if dirty else "")


def write(name, result, out=None):
    path = pathlib.Path(out) if out else RESULTS / f"{result['date'][:10]}-{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return path
