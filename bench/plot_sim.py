#!/usr/bin/env python3
"""Plots simulator results as PNGs: from `tessera simulate --json` files, SLO attainment per model
under each policy; from `bench/sim_compare.py` files, GPUs each policy needs at the target
attainment, per workload.

    .venv/bin/python bench/plot_sim.py RESULT.json [MORE.json ...] --out bench/plots"""
import argparse
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

POLICIES = ("tessera", "nexus", "igniter", "gslice")


def bars(ax, groups, series, values, ylabel, title):
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        ax.bar([g + i * width for g in range(len(groups))], values[name], width, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("--out", default="bench/plots")
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in map(pathlib.Path, a.results):
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            sys.exit(f"error: {path}: {e}")
        kind = doc.get("benchmark")
        fig, ax = plt.subplots(figsize=(8, 4.5))
        if kind == "tessera-simulate":
            pols = [p for p in POLICIES if p in doc["policies"]]
            names = [m["model"] for m in doc["policies"][pols[0]]["models"]][:40]
            vals = {p: [100 * m["slo_attainment"] for m in doc["policies"][p]["models"]][:40]
                    for p in pols}
            labels = {p: f"{p} ({doc['policies'][p]['gpus_used']} GPUs)" for p in pols}
            bars(ax, names, pols, vals, "SLO attainment (%)",
                 "SLO attainment per model (simulated)")
            ax.set_ylim(max(0, min(min(v) for v in vals.values()) - 1), 100.5)
            handles, _ = ax.get_legend_handles_labels()
            ax.legend(handles, [labels[p] for p in pols], fontsize=7)
            name = f"{path.stem}_attainment.png"
            timed = [p for p in pols if doc["policies"][p].get("timeline")]
            if timed:
                # SLO attainment and GPUs held per window, over the run.
                tf, (ta, tg) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
                for p in timed:
                    tl = doc["policies"][p]["timeline"]
                    t = [w[0] for w in tl]
                    ta.plot(t, [100 * w[2] / w[3] if w[3] else 100 for w in tl], label=p)
                    tg.step(t, [w[5] for w in tl], where="post", label=p)
                ta.set_ylabel("attainment per window (%)")
                ta.set_title("SLO attainment and GPUs over time (simulated)")
                ta.legend(fontsize=7)
                tg.set_ylabel("GPUs holding slices")
                tg.set_xlabel("simulated time (s)")
                tf.tight_layout()
                tf.savefig(out / f"{path.stem}_timeline.png", dpi=120)
                plt.close(tf)
                written.append(str(out / f"{path.stem}_timeline.png"))
        elif kind == "sim-compare":
            cases = doc["cases"]
            groups = [f"{c['models']} {c['arrival']} s{c['seed']}" for c in cases]
            pols = [p for p in POLICIES if p in cases[0]]
            vals = {p: [c[p]["gpus_used"] for c in cases] for p in pols}
            bars(ax, groups, pols, vals, "GPUs",
                 f"GPUs needed at {100 * doc['target_attainment']:.1f}% SLO attainment "
                 "(simulated)")
            name = f"{path.stem}_gpus.png"
        else:
            sys.exit(f"error: {path}: not a tessera simulate or sim_compare result file")
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(str(out / name))
    print("wrote " + ", ".join(written))


if __name__ == "__main__":
    main()
