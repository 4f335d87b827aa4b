"""Each supernet strategy against SPOS, paired seed by seed (issues 13-14).

Reads finished runs of the three strategy benchmarks on one ground-truth table and budget:

* ``--strategies DIR ...``: ``bench_strategies.py --out`` folders with ``spos`` and, when run,
  ``rdnas`` and the teacher alone (``proxy:<name>``) per seed (their ``summary.json``);
* ``--fewshot DIR ...``: ``bench_fewshot_tau.py --out`` folders (``results.jsonl``); the run
  ``--fewshot-run`` (default ``fs_b2_d1``) with split metric ``--fewshot-metric``;
* ``--ennas DIR ...``: ``bench_ennas.py --out`` folders, one per seed (``ennas_diversity``).

For the seeds in ``--seeds`` it prints each run's Kendall tau per seed, then the paired
difference of every run from SPOS (and RD-NAS from its teacher): mean, sd, paired t, how many
seeds are higher, the exact two-sided sign-flip p-value, and a 95 % bootstrap interval of the
mean over seeds. A seed missing from any run is left out of every comparison and named.

    python benchmarks/report_strategies_heldout.py --seeds 6-19 \\
        --strategies /work/bench_runs/heldout_6_19 --fewshot /work/bench_runs/fs_metrics \\
        --ennas /work/bench_runs/ennas_ho_s*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import bootstrap

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_predictor_nb201 import parse_seeds  # noqa: E402
from report_ennas_teachers import paired  # noqa: E402


def strategies_taus(folders: list[Path]) -> dict[str, dict[int, float]]:
    """Tau per run and seed over one or more ``--out`` folders (e.g. seeds run in two halves);
    a seed found twice with different taus is an error."""
    out: dict[str, dict[int, float]] = {}
    for folder in folders:
        summary = json.loads((folder / "summary.json").read_text())
        for name, run in summary["runs"].items():
            taus = out.setdefault(name, {})
            for e in run["seeds"]:
                if e["seed"] in taus and taus[e["seed"]] != e["kendall_tau"]:
                    raise SystemExit(f"seed {e['seed']} of {name} appears twice with different "
                                     f"taus ({taus[e['seed']]} and {e['kendall_tau']})")
                taus[e["seed"]] = e["kendall_tau"]
    return out


def fewshot_taus(folders: list[Path], metric: str, run: str = "fs_b2_d1") -> dict[int, float]:
    """Tau per seed of few-shot run ``run`` split by ``metric``, over one or more ``--out``
    folders; a seed found twice with different taus is an error."""
    out: dict[int, float] = {}
    for folder in folders:
        rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()
                if line.strip()]
        for r in rows:
            if r["run"] != run or r.get("metric", "gm") != metric:
                continue
            if r["seed"] in out and out[r["seed"]] != r["kendall_tau"]:
                raise SystemExit(f"seed {r['seed']} of {run} ({metric}) appears twice with "
                                 f"different taus ({out[r['seed']]} and {r['kendall_tau']})")
            out[r["seed"]] = r["kendall_tau"]
    return out


def ennas_taus(folders: list[Path]) -> dict[int, float]:
    out = {}
    for f in folders:
        s = json.loads((f / "summary.json").read_text())
        out[s["args"]["seed"]] = s["runs"]["ennas_diversity"]["kendall_tau"]
    return out


def boot_ci(diff: np.ndarray, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean difference over seeds."""
    ci = bootstrap((diff,), np.mean, n_resamples=n_boot, method="percentile",
                   rng=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", required=True, help="e.g. 6-19")
    ap.add_argument("--strategies", type=Path, nargs="+", required=True)
    ap.add_argument("--teacher", default="jacov", help="the proxy:<name> run RD-NAS distilled")
    ap.add_argument("--fewshot", type=Path, nargs="+", default=None)
    ap.add_argument("--fewshot-metric", default="jacov")
    ap.add_argument("--fewshot-run", default="fs_b2_d1",
                    help="e.g. fs_b2_d1 (equal cost) or fs_b2_d1_paper (each leaf the budget)")
    ap.add_argument("--ennas", type=Path, nargs="*", default=[])
    args = ap.parse_args(argv)

    st = strategies_taus(args.strategies)
    runs: dict[str, dict[int, float]] = {"spos": st["spos"]}
    if "rdnas" in st:
        runs["rdnas"] = st["rdnas"]
    if f"proxy:{args.teacher}" in st:
        runs[f"teacher {args.teacher}"] = st[f"proxy:{args.teacher}"]
    if args.fewshot is not None:
        label = args.fewshot_run.removeprefix("fs_").replace("_", " ")
        runs[f"few-shot {label} ({args.fewshot_metric})"] = fewshot_taus(
            args.fewshot, args.fewshot_metric, args.fewshot_run)
    if args.ennas:
        runs["ennas (diversity)"] = ennas_taus(args.ennas)
    want = sorted(set(parse_seeds(args.seeds)))
    seeds = [s for s in want if all(s in r for r in runs.values())]
    missing = {name: [s for s in want if s not in r] for name, r in runs.items()}
    missing = {k: v for k, v in missing.items() if v}
    if missing:
        print(f"left out (seed missing from a run): {missing}")
    if len(seeds) < 2:
        raise SystemExit(f"need >= 2 seeds present in every run, have {seeds}")
    names = list(runs)
    print("| seed | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    table = np.array([[runs[n][s] for n in names] for s in seeds])
    for s, row in zip(seeds, table):
        print(f"| {s} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    print("| mean | " + " | ".join(f"{v:.3f}" for v in table.mean(0)) + " |")
    print()
    report = {"seeds": seeds, "runs": {n: table[:, i].tolist() for i, n in enumerate(names)},
              "paired": {}}
    base = table[:, 0]
    pairs = [(n, "spos", table[:, i] - base) for i, n in enumerate(names) if i > 0
             and not n.startswith("teacher")]
    if "rdnas" in runs and f"teacher {args.teacher}" in runs:
        teacher = table[:, names.index(f"teacher {args.teacher}")]
        pairs.append(("rdnas", f"teacher {args.teacher}", table[:, names.index("rdnas")] - teacher))
    for a, b, diff in pairs:
        lo, hi = boot_ci(diff)
        print(f"{a} - {b}: {paired(diff)}, 95 % bootstrap of the mean [{lo:+.4f}, {hi:+.4f}]")
        report["paired"][f"{a} - {b}"] = {"mean": float(diff.mean()), "low": lo, "high": hi}
    return report


if __name__ == "__main__":
    main()
