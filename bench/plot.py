#!/usr/bin/env python3
"""Plots `tessera bench` result files (--json) as PNGs: latency CDFs per model, SLO attainment
over time, and goodput against offered load for sweeps.

    .venv/bin/python bench/plot.py RESULT.json [MORE.json ...] --out bench/plots

Several files are overlaid (each line is labelled file:model), e.g. to compare sharing policies
or servers on the same scenario."""
import argparse
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def finish(fig, ax, path, title, xlabel, ylabel):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def runs_of(doc):
    """The runs in a result file that carry series: a plain run, or a sweep's best step."""
    if "run" in doc:
        return [doc["run"]]
    best = doc.get("sweep", {}).get("best")
    return [best] if best else []


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="result files from tessera bench --json")
    ap.add_argument("--out", default="bench/plots", help="folder for the PNGs")
    a = ap.parse_args()
    docs = []
    for path in a.results:
        try:
            docs.append((pathlib.Path(path).stem, json.loads(pathlib.Path(path).read_text())))
        except (OSError, ValueError) as e:
            sys.exit(f"error: {path}: {e}")
        if docs[-1][1].get("benchmark") != "tessera-bench":
            sys.exit(f"error: {path}: not a tessera bench result file (no \"benchmark\": "
                     f"\"tessera-bench\")")
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    many = len(docs) > 1
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, doc in docs:
        for run in runs_of(doc):
            for m in run["models"]:
                pts = m.get("latency_cdf_ms", [])
                if not pts:
                    continue
                ax.step([p[0] for p in pts], [p[1] for p in pts], where="post",
                        label=f"{label}:{m['name']}" if many else m["name"])
                if "slo_ms" in m:
                    ax.axvline(m["slo_ms"], color="grey", lw=0.5, ls=":")
    ax.set_xscale("log")
    written.append(finish(fig, ax, out / "latency_cdf.png", "Latency CDF (dotted: SLOs)",
                          "latency (ms, from the time the request was due)",
                          "fraction of requests"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, doc in docs:
        for run in runs_of(doc):
            for m in run["models"]:
                tl = [p for p in m.get("timeline", []) if p["sent"] > 0]
                if tl:
                    ax.plot([p["t_s"] for p in tl], [100 * p["attainment"] for p in tl],
                            marker=".", label=f"{label}:{m['name']}" if many else m["name"])
    written.append(finish(fig, ax, out / "attainment_over_time.png", "SLO attainment over time",
                          "time (s from the start; the first seconds are warm-up)",
                          "SLO attainment per second (%)"))

    sweeps = [(label, doc["sweep"]) for label, doc in docs if "sweep" in doc]
    if sweeps:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        top = 0
        for label, sw in sweeps:
            steps = sorted(sw["steps"], key=lambda s: s["offered_rps"])
            xs = [s["offered_rps"] for s in steps]
            top = max(top, max(xs))
            ax.plot(xs, [s["total"]["goodput_rps"] for s in steps], marker="o", label=label)
            for s in steps:
                if not s["held"]:
                    ax.plot(s["offered_rps"], s["total"]["goodput_rps"], "x", color="red")
        ax.plot([0, top], [0, top], color="grey", lw=0.5, ls="--", label="goodput = offered")
        written.append(finish(fig, ax, out / "goodput_vs_load.png",
                              "Goodput vs offered load (x: attainment below target)",
                              "offered load (requests/s)", "goodput (requests/s within SLO)"))
    print("wrote " + ", ".join(str(out / w) for w in written))


if __name__ == "__main__":
    main()
