"""EnNAS: are teams drawn by diversity-based sampling better ensemble teachers, on the same weights?

The training-time comparison of ``bench_ennas.py`` (diversity vs uniform teachers over training)
mixes two effects: the sampler picks the team, and the sampler also shapes the supernet's
weights. Here the weights are fixed: each trained supernet (a ``bench_ennas.py`` checkpoint)
gets its operator diversity refreshed from its final weights, then ``--teams`` teams of ``m``
paths are drawn by each of three samplers, with seeded generators:

* ``uniform``: ``m`` independent uniform paths (``UniformSampler``; an edge may repeat an op);
* ``distinct``: on every edge ``m`` different ops, uniformly without replacement (the control:
  diversity sampling also draws without replacement, so this isolates the diversity weighting);
* ``diversity``: :class:`DiversitySampler` (calibrated so each op is equally likely overall);
* ``maxdiv``: the bound of what any sampler with the paper's constraint can do: on every edge
  the op set of the team is drawn from the distribution over ``m``-subsets that maximises the
  expected mean pairwise diversity subject to every op being in the team with probability
  ``m / n`` (a linear program, :func:`max_diversity_sets`), the ops then shuffled across the
  paths (so each path alone is still uniform).

Each team's members run on validation images in batches of ``--batch-size`` in train-mode
BatchNorm with the running statistics restored (as the ensemble teacher is built in training).
Per team it records the mean member accuracy and three teachers' accuracies:

* ``teacher_in``: simplex weights solved on each batch itself, as ``EnsembleKDStrategy`` does
  during training (the teacher the students learn from);
* ``teacher_out``: weights solved once on ``--fit`` training images, applied to the
  validation images (out of sample);
* ``mean_logits``: equal weights.

Paired over supernets (one row per checkpoint): diversity - uniform and diversity - distinct,
with an exact sign-flip p and a bootstrap interval of the mean over supernets.

    python benchmarks/bench_ennas_teams.py --groundtruth benchmarks/data/nb201_fmnist_gt.csv \
        --root ../shared/data/fashion-mnist --checkpoints /work/bench_runs/ennas_ho_s*/ennas_diversity \
        --teams 60 --out /tmp/ennas_teams.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linprog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasrank.supernet.base import UniformSampler  # noqa: E402
from nasrank.supernet.ennas import DiversitySampler, _frozen_buffers, ensemble_weights  # noqa: E402
from nasrank.supernet.nb201_supernet import NB201Supernet  # noqa: E402
from report_ennas_teachers import sign_flip_p  # noqa: E402  (benchmarks/ is the script's folder)

SAMPLERS = ("uniform", "distinct", "diversity", "maxdiv")
METRICS = ("members", "teacher_in", "teacher_out", "mean_logits")


def distinct_team(net: NB201Supernet, m: int, rng: np.random.Generator) -> list:
    """``m`` paths whose ops differ on every edge (uniform without replacement; needs m <= ops)."""
    columns = []
    for ops in net.decisions():
        if m > len(ops):
            raise SystemExit(f"--m {m} exceeds the {len(ops)} ops of an edge")
        columns.append([int(c) for c in rng.choice(len(ops), m, replace=False)])
    return [net.arch_from_choices([col[i] for col in columns]) for i in range(m)]


def max_diversity_sets(div: np.ndarray, m: int) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The ``m``-subsets of an edge's ops and their probabilities maximising the expected mean
    pairwise diversity with every op's inclusion probability ``m / n`` (scipy's ``linprog``;
    ``sum p = 1`` follows from the inclusion rows)."""
    n = len(div)
    sets = list(itertools.combinations(range(n), m))
    gain = [np.mean([div[i, j] for i, j in itertools.combinations(t, 2)]) for t in sets]
    a_eq = np.array([[1.0 if o in t else 0.0 for t in sets] for o in range(n)])
    res = linprog(-np.array(gain), A_eq=a_eq, b_eq=np.full(n, m / n), bounds=(0, 1),
                  method="highs")
    if res.status != 0:
        raise SystemExit(f"max-diversity linear program failed: {res.message}")
    p = np.clip(res.x, 0.0, None)
    return sets, p / p.sum()


def maxdiv_team(net: NB201Supernet, plans: list, m: int, rng: np.random.Generator) -> list:
    """A team drawn from the per-edge :func:`max_diversity_sets` plans, ops shuffled."""
    columns = []
    for sets, p in plans:
        t = sets[int(rng.choice(len(sets), p=p))]
        columns.append([int(c) for c in rng.permutation(t)])
    return [net.arch_from_choices([col[i] for col in columns]) for i in range(m)]


def team_diversity(net: NB201Supernet, diversity: list[np.ndarray], team: list) -> float:
    """Mean over edges and over pairs of the team's paths of the two ops' diversity (0 for a
    pair with the same op: what the sampler aims to raise)."""
    vals = []
    for e, ops in enumerate(net.decisions()):
        idx = [ops.index(a.ops[e]) for a in team]
        vals += [diversity[e][i, j] for i, j in itertools.combinations(idx, 2)]
    return float(np.mean(vals))


def logits_of(net: NB201Supernet, arch, batches: list[torch.Tensor]) -> torch.Tensor:
    """Train-mode logits of ``arch`` on each batch (batch statistics; buffers restored)."""
    net.train()
    with torch.no_grad(), _frozen_buffers(net):
        return torch.stack([net(x, arch) for x in batches])  # [n_batches, B, C]


def team_scores(z_eval: torch.Tensor, y_eval: torch.Tensor, z_fit: torch.Tensor,
                y_fit: torch.Tensor) -> dict[str, float]:
    """``z_eval`` [m, n_batches, B, C], ``z_fit`` [m, F, C]: the four accuracies of one team."""
    nb = z_eval.shape[1]
    members = float((z_eval.argmax(-1) == y_eval).float().mean())
    correct_in = 0
    for b in range(nb):
        w = torch.as_tensor(ensemble_weights(z_eval[:, b], y_eval[b]), dtype=z_eval.dtype)
        correct_in += int((torch.tensordot(w, z_eval[:, b], dims=1).argmax(-1) == y_eval[b]).sum())
    w_out = torch.as_tensor(ensemble_weights(z_fit, y_fit), dtype=z_eval.dtype)
    t_out = torch.tensordot(w_out, z_eval, dims=1)
    return {"members": members,
            "teacher_in": correct_in / y_eval.numel(),
            "teacher_out": float((t_out.argmax(-1) == y_eval).float().mean()),
            "mean_logits": float((z_eval.mean(0).argmax(-1) == y_eval).float().mean())}


def difference_stats(d: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Mean of paired differences ``d``, its 95 % bootstrap interval (10,000 resamples drawn
    from ``rng``), how many are > 0, and the exact sign-flip p (up to 20 pairs)."""
    boot = [rng.choice(d, len(d)).mean() for _ in range(10_000)]
    return {"mean": float(d.mean()),
            "interval95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
            "higher": int((d > 0).sum()), "n": len(d),
            "p": sign_flip_p(d) if len(d) <= 20 else None}


def _value(row: dict, sampler: str, metric: str) -> float:
    """A row's metric of one sampler; ``gain_in`` / ``gain_out`` = teacher - members."""
    if metric.startswith("gain_"):
        return row[f"{sampler}.teacher_{metric[5:]}"] - row[f"{sampler}.members"]
    return row[f"{sampler}.{metric}"]


def paired_report(rows: list[dict]) -> dict[str, dict]:
    """Paired differences over supernets (rows) of every metric between sampler pairs, plus
    the ensemble gain ``gain_in`` / ``gain_out`` = teacher accuracy - mean member accuracy
    (it takes out the members' own accuracy, which varies from draw to draw but not, in
    expectation, with the sampler: each path alone is uniform under all four)."""
    rng = np.random.default_rng(0)
    out = {}
    for a, b in (("diversity", "uniform"), ("diversity", "distinct"), ("distinct", "uniform"),
                 ("maxdiv", "distinct")):
        for k in (*METRICS, "team_diversity", "gain_in", "gain_out"):
            d = np.array([_value(r, a, k) - _value(r, b, k) for r in rows])
            out[f"{a}-{b}.{k}"] = difference_stats(d, rng)
    return out


def across_report(rows_a: list[dict], rows_b: list[dict]) -> dict[str, dict]:
    """Paired by seed: each sampler's metrics on the supernets of ``rows_a`` minus those of
    ``rows_b`` (e.g. fair-trained against diversity-trained weights, same teams' sampler)."""
    by_seed = {r["seed"]: r for r in rows_b}
    if len(by_seed) != len(rows_b) or len({r["seed"] for r in rows_a}) != len(rows_a):
        raise SystemExit("--across: a seed appears twice in one side")
    pairs = [(r, by_seed[r["seed"]]) for r in rows_a if r["seed"] in by_seed]
    if len(pairs) < 2:
        raise SystemExit(f"--across needs >= 2 seeds on both sides, found {len(pairs)}")
    rng = np.random.default_rng(0)
    out = {}
    for s in SAMPLERS:
        for k in (*METRICS, "team_diversity"):
            d = np.array([a[f"{s}.{k}"] - b[f"{s}.{k}"] for a, b in pairs])
            out[f"{s}.{k}"] = difference_stats(d, rng)
    return out


def print_paired(paired: dict[str, dict]) -> None:
    for k, v in paired.items():
        p = "" if v["p"] is None else f" p={v['p']:.4f}"
        print(f"{k:38s} {v['mean']:+.4f} [{v['interval95'][0]:+.4f}, {v['interval95'][1]:+.4f}]"
              f" higher {v['higher']}/{v['n']}{p}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summarize", nargs="+", default=None, metavar="JSON",
                   help="only print the paired report of the rows of these --out files")
    p.add_argument("--across", nargs=2, default=None, metavar=("A", "B"),
                   help="comma-separated --out files of two sets of supernets: print each "
                        "sampler's metrics on A's supernets minus B's, paired by seed")
    p.add_argument("--groundtruth", help="the table whose recipe gives the data")
    p.add_argument("--root", help="dataset folder")
    p.add_argument("--checkpoints", nargs="+",
                   help="bench_ennas.py run folders holding supernet.pt (their summary.json one "
                        "level up gives the seed and m)")
    p.add_argument("--teams", type=int, default=60)
    p.add_argument("--m", type=int, default=None,
                   help="team size (default: the m the supernet was trained with)")
    p.add_argument("--eval-images", type=int, default=640)
    p.add_argument("--fit", type=int, default=320, help="training images to solve teacher_out")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.across:
        sides = [[r for f in side.split(",") for r in json.loads(Path(f).read_text())["rows"]]
                 for side in args.across]
        report = {"across": across_report(*sides)}
        print_paired(report["across"])
        return report
    if args.summarize:
        rows = [r for f in args.summarize for r in json.loads(Path(f).read_text())["rows"]]
        report = {"rows": rows, "paired": paired_report(rows)}
        print_paired(report["paired"])
        return report
    missing = [n for n in ("groundtruth", "root", "checkpoints", "out") if not getattr(args, n)]
    if missing:
        p.error(f"needs --{', --'.join(missing)} (or --summarize)")
    torch.set_num_threads(args.threads)

    from nasrank.search.groundtruth import Recipe, load_recipe_data, read_groundtruth

    truth = read_groundtruth(args.groundtruth)
    recipe = Recipe(**truth.recipe) if isinstance(truth.recipe, dict) else truth.recipe
    data = load_recipe_data(recipe, args.root)
    xv, yv = data.valid.tensors  # type: ignore[attr-defined]
    xt, yt = data.train.tensors  # type: ignore[attr-defined]
    n_eval = args.eval_images - args.eval_images % args.batch_size
    if n_eval < args.batch_size or n_eval > len(yv):
        raise SystemExit(f"--eval-images {args.eval_images} must hold one batch of "
                         f"{args.batch_size} and at most {len(yv)} images")
    sel = np.random.default_rng(0).choice(len(yv), n_eval, replace=False)
    x_eval = xv[sel].reshape(-1, args.batch_size, *xv.shape[1:])
    y_eval = yv[sel].reshape(-1, args.batch_size)
    fit_sel = np.random.default_rng(1).choice(len(yt), args.fit, replace=False)
    x_fit, y_fit = xt[fit_sel], yt[fit_sel]
    fit_batches = list(x_fit.split(args.batch_size))

    rows = []
    for ck in args.checkpoints:
        ck = Path(ck)
        summary = json.loads((ck.parent / "summary.json").read_text())
        seed = int(summary["args"]["seed"])
        m = int(summary["args"]["m"]) if args.m is None else args.m
        epochs = int(summary["args"]["epochs"])
        net = NB201Supernet(data.num_classes, C=summary["C"], N=summary["N"],
                            in_channels=data.input_shape[0])
        state = torch.load(ck / "supernet.pt", map_location="cpu", weights_only=False)
        net.load_state_dict(state["model"])
        t0 = time.perf_counter()
        div = DiversitySampler(net, m, seed=seed)
        div.begin_epoch(epochs, data.train)  # diversity of the final weights, fresh probe
        uni = UniformSampler(net, m)
        plans = [max_diversity_sets(d, m) for d in div.diversity]
        draw = {"uniform": lambda r: uni.sample(r), "distinct": lambda r: distinct_team(net, m, r),
                "diversity": lambda r: div.sample(r), "maxdiv": lambda r: maxdiv_team(net, plans, m, r)}
        per = {s: {k: [] for k in (*METRICS, "team_diversity")} for s in SAMPLERS}
        cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for si, s in enumerate(SAMPLERS):
            rng = np.random.default_rng([seed, 7, si])
            for _ in range(args.teams):
                team = draw[s](rng)
                ze, zf = [], []
                for a in team:
                    key = str(a)
                    if key not in cache:
                        cache[key] = (logits_of(net, a, list(x_eval)),
                                      logits_of(net, a, fit_batches).reshape(args.fit, -1))
                    ze.append(cache[key][0])
                    zf.append(cache[key][1])
                sc = team_scores(torch.stack(ze).double(), y_eval, torch.stack(zf).double(), y_fit)
                for k in METRICS:
                    per[s][k].append(sc[k])
                per[s]["team_diversity"].append(team_diversity(net, div.diversity, team))
        row = {"checkpoint": str(ck), "seed": seed, "m": m, "seconds": time.perf_counter() - t0,
               "mean_offdiag_diversity": float(np.mean([d[~np.eye(len(d), dtype=bool)].mean()
                                                        for d in div.diversity])),
               **{f"{s}.{k}": float(np.mean(per[s][k])) for s in SAMPLERS
                  for k in (*METRICS, "team_diversity")}}
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                          for k, v in row.items()}), flush=True)

    report = {"args": vars(args), "rows": rows, "paired": paired_report(rows)}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print_paired(report["paired"])
    return report


if __name__ == "__main__":
    main()
