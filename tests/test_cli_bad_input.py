"""Every subcommand against hostile input (issue 17): exit 2, one ``nasrank: error:`` line, no
traceback, and the output folder byte-identical before and after (a refused command writes
nothing, so the corrected command is never refused for what the wrong one left).

Commands run in-process (``nasrank.search.cli.main``) from an empty working folder, so a
command that fell back to its default ``runs/...`` folder would show up too.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from conftest import DATA

NB201 = DATA / "nb201" / "nb201.csv"

BINARY = bytes(range(256)) * 16


def _inputs(root: Path) -> dict[str, str]:
    """Bad (and a few good) files under ``root``; returns placeholder -> path."""
    p: dict[str, Path] = {}

    def put(name: str, content: bytes | str, rel: str | None = None) -> None:
        path = root / (rel or name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        p[name] = path

    put("file", "just a file\n")
    put("binary", BINARY)
    put("latin1", "key,acc,note\ncaf\xe9,1.0,\n".encode("latin-1"))
    put("labels", "key,acc,note\n" + "".join(
        f"|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|{op}~2|,{v},\n"
        for op, v in (("skip_connect", 1.0), ("nor_conv_1x1", 2.0), ("avg_pool_3x3", 3.0))))
    put("badarch", "not an architecture\n")
    put("nb101_json", b"\x00\x01garbage{")
    if NB201.is_file():
        lines = NB201.read_text().splitlines()[:4]
        put("nb201_trunc", "\n".join(lines[:3] + [lines[3][: len(lines[3]) // 2]]))
        # a 300-cell slice keeps the search cases fast (searched on its labelled cells)
        put("nb201", "\n".join(NB201.read_text().splitlines()[:301]) + "\n", "nb201_300.csv")
    # TOML values of the wrong type, and unreadable TOML files
    put("toml_device", "device = 5\n")
    put("toml_out", "[run]\nout = 5\n")
    put("toml_data", "[search]\ndata = [\"a\"]\n")
    put("toml_seed", "seed = \"x\"\n")
    put("toml_budget", "[search]\nbudget = 1.5\n")
    put("toml_proxies", "[run]\nproxies = 5\n")
    put("toml_binary", BINARY)
    put("toml_latin1", "# caf\xe9\nseed = 1\n".encode("latin-1"))
    put("toml_table", "[run]\nsampler = 5\n")
    # supernet folders whose settings.json is corrupt, empty, incomplete or binary
    for name, content in (("sn_bad", "{"), ("sn_empty", ""), ("sn_incomplete", "{}"),
                          ("sn_binary", BINARY), ("sn_list", "[1, 2]")):
        put(name + "_settings", content, f"{name}/supernet/settings.json")
        p[name] = root / name
    # checkpoints: empty, binary, crafted (would run a command)
    put("ckpt_empty", b"")
    put("ckpt_binary", BINARY)
    put("ckpt_crafted", pickle.dumps(_Crafted(root / "pwned"), protocol=2))
    # datasets: a crafted CIFAR batch, malformed IDX files
    cifar = root / "cifar" / "cifar-10-batches-py"
    for b in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        put("cifar_" + b, pickle.dumps({b"data": _Crafted(root / "pwned")}, protocol=2),
            f"cifar/cifar-10-batches-py/{b}")
    p["cifar"] = cifar.parent
    for split in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            put(f"idx_{split}_{kind}", b"\x1f\x8b\x08\x00garbage", f"idx/{split}-{kind}-ubyte.gz")
    p["idx"] = root / "idx"
    from nasrank.predictor import RankingPredictor
    from nasrank.spaces.nb201 import NB201Space

    p["ckpt_pred"] = root / "predictor.pt"  # a good (untrained) predictor checkpoint
    RankingPredictor(NB201Space(), seed=0).save(p["ckpt_pred"])
    p["missing"] = root / "missing.csv"
    return {k: str(v) for k, v in p.items()}


class _Crafted:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# (id, argv with {placeholders}; {out} is a fresh folder path, {file} a regular file)
CASES: list[tuple[str, str]] = [
    # --- --out that is a file, or lies below one
    ("run-out-file", "run --out {file}"),
    ("run-out-below-file", "run --out {file}/sub"),
    ("search-out-file", "search --data {nb201} --out {file}"),
    ("supernet-train-out-file", "supernet-train --out {file}"),
    ("weak-labels-out-file", "weak-labels --out {file}"),
    ("proxies-out-below-file", "proxies --out {file}/x"),
    ("pretrain-out-file", "pretrain --labels {labels} --out {file}"),
    ("finetune-out-file", "finetune --labels {labels} --metric acc --out {file}"),
    ("fewshot-out-file", "fewshot --out {file}"),
    # --- non-UTF-8 / binary / truncated benchmark files
    ("benchmark-nb201-binary", "benchmark --name nb201 --data {binary}"),
    ("benchmark-nb201-latin1", "benchmark --name nb201 --data {latin1}"),
    ("benchmark-nb201-truncated", "benchmark --name nb201 --data {nb201_trunc}"),
    ("benchmark-cvpr-binary", "benchmark --name cvpr2021 --data {binary}"),
    ("benchmark-nb101-binary", "benchmark --name nb101 --data {nb101_json}"),
    ("benchmark-missing", "benchmark --name nb201 --data {missing}"),
    ("search-data-binary", "search --data {binary} --out {out}"),
    ("search-data-truncated", "search --data {nb201_trunc} --out {out}"),
    ("search-cvpr-binary", "search --benchmark cvpr2021 --data {binary} --out {out}"),
    ("finetune-benchmark-binary", "finetune --benchmark nb201 --data {binary} --metric x --out {out}"),
    # --- label tables
    ("pretrain-labels-binary", "pretrain --labels {binary} --out {out}"),
    ("pretrain-labels-latin1", "pretrain --labels {latin1} --out {out}"),
    ("pretrain-labels-missing", "pretrain --labels {missing} --out {out}"),
    ("pretrain-labels-not-a-table", "pretrain --labels {file} --out {out}"),
    ("pretrain-unknown-column", "pretrain --labels {labels} --columns nosuch --out {out}"),
    ("finetune-labels-binary", "finetune --labels {binary} --metric acc --out {out}"),
    ("finetune-unknown-metric", "finetune --labels {labels} --metric nosuch --out {out}"),
    ("supernet-eval-truth-binary", "supernet-eval --truth {binary} --labels {labels} --out {out}"),
    # --- --archs / --arch-file files
    ("predict-archs-binary", "predict --checkpoint {ckpt_pred} --archs {binary}"),
    ("predict-archs-latin1", "predict --checkpoint {ckpt_pred} --archs {latin1}"),
    ("predict-archs-bad", "predict --checkpoint {ckpt_pred} --archs {badarch} --out {out}"),
    ("predict-archs-missing", "predict --checkpoint {ckpt_pred} --archs {missing}"),
    ("predict-out-file", "predict --checkpoint {ckpt_pred} --all --out {file}"),
    ("groundtruth-arch-file-binary", "groundtruth --arch-file {binary} --out {out}/gt.csv"),
    ("groundtruth-arch-file-latin1", "groundtruth --arch-file {latin1} --out {out}/gt.csv"),
    ("groundtruth-arch-file-bad", "groundtruth --arch-file {badarch} --out {out}/gt.csv"),
    ("groundtruth-width-sample-nb201",
     "groundtruth --archs 5 --arch-sample width --out {out}/gt.csv"),
    ("groundtruth-width-sample-with-file",
     "groundtruth --space cvpr2021 --arch-sample width --arch-file {badarch} --out {out}/gt.csv"),
    ("groundtruth-arch-sample-unknown",
     "groundtruth --space cvpr2021 --archs 5 --arch-sample flops --out {out}/gt.csv"),
    # --- checkpoints
    ("predict-ckpt-empty", "predict --checkpoint {ckpt_empty} --all"),
    ("predict-ckpt-binary", "predict --checkpoint {ckpt_binary} --all"),
    ("predict-ckpt-crafted", "predict --checkpoint {ckpt_crafted} --all"),
    ("search-ckpt-crafted", "search --data {nb201} --checkpoint {ckpt_crafted} --out {out}"),
    # --- config files
    ("config-binary", "--config {toml_binary} run --out {out}"),
    ("config-latin1", "--config {toml_latin1} run --out {out}"),
    ("config-missing", "--config {missing} run --out {out}"),
    ("toml-device-int", "--config {toml_device} run --out {out}"),
    ("toml-out-int", "--config {toml_out} run"),
    ("toml-data-list", "--config {toml_data} search --out {out}"),
    ("toml-seed-str", "--config {toml_seed} run --out {out}"),
    ("toml-budget-float", "--config {toml_budget} search --data {nb201} --out {out}"),
    ("toml-proxies-int", "--config {toml_proxies} run --out {out}"),
    ("toml-component-int", "--config {toml_table} run --out {out}"),
    # --- a corrupt or incomplete supernet/settings.json
    ("weak-labels-settings-bad", "weak-labels --out {sn_bad}"),
    ("weak-labels-settings-empty", "weak-labels --out {sn_empty}"),
    ("weak-labels-settings-incomplete", "weak-labels --out {sn_incomplete}"),
    ("weak-labels-settings-binary", "weak-labels --out {sn_binary}"),
    ("weak-labels-settings-list", "weak-labels --out {sn_list}"),
    # --- datasets: crafted CIFAR batch, malformed IDX
    ("supernet-train-cifar-crafted", "supernet-train --dataset cifar10 --data-root {cifar} --out {out}"),
    ("supernet-train-idx-malformed", "supernet-train --dataset fashion-mnist --data-root {idx} --out {out}"),
    ("proxies-dataset-unknown", "proxies --dataset foo --out {out}"),
    # --- options checked before any work (and nothing written)
    ("run-dataset-unknown", "run --dataset foo --out {out}"),
    ("run-proxies-unknown", "run --proxies foo --out {out}"),
    # 2 trainings, 1 round + 1 final: the first predictor fit would see one architecture
    ("run-budget-below-first-fit", "run --budget 2 --method.rounds 1 --out {out}"),
    ("run-one-weak-label", "run --archs 1 --out {out}"),  # nothing to pretrain on
    # the recipe's dataset (Fashion-MNIST) without --data-root: refused before the table exists
    ("groundtruth-dataset-root-missing", "groundtruth --space nb201 --archs 2 --seeds 1 --out {out}/gt.csv"),
    ("search-budget-below-first-fit", "search --data {nb201} --budget 3 --method.rounds 2 --out {out}"),
    ("search-sre-one-init", "search --data {nb201} --method surrogate-re --method.n-init 1 --out {out}"),
    ("search-optuna-one-startup", "search --data {nb201} --method optuna --method.n-startup-trials 1 --out {out}"),
    ("weak-labels-proxies-unknown", "weak-labels --proxies foo --out {sn_incomplete}"),
    ("search-metric-unknown", "search --data {nb201} --metric nosuch --out {out}"),
    ("search-budget-above-space", "search --data {nb201} --budget 301 --method random --out {out}"),
    ("search-greedy-proxy-unknown", "search --data {nb201} --method greedy --method.proxy nosuch --out {out}"),
    ("proxies-shard-bad", "proxies --shard 3/2 --out {out}"),
]


def _snapshot(path: Path) -> dict[str, bytes] | None:
    if not path.exists():
        return None
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(path.rglob("*"))}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    return root, _inputs(root)


@pytest.mark.parametrize("case_id, template", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case_id, template, inputs, tmp_path,
                                                            capsys, monkeypatch):
    from nasrank.search.cli import main

    root, paths = inputs
    if "{nb201" in template and not NB201.is_file():
        pytest.skip("shared NB201 data not available")
    out = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    argv = template.format(out=out, **paths).split()
    watched = [root, out, cwd]
    before = [_snapshot(w) for w in watched]
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = main(argv + ["--device", "cpu"] if _takes_device(argv) else argv)
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err + captured.out
    assert code == 2, f"exit {code}; stderr: {err!r}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("nasrank: error: "), err
    assert [_snapshot(w) for w in watched] == before, "the refused command wrote files"
    assert not (root / "pwned").exists()


def _takes_device(argv: list[str]) -> bool:
    cmd = next((a for a in argv if not a.startswith("-") and not a.endswith(".toml")
                and "/" not in a), None)
    return cmd not in (None, "benchmark", "spaces") and "--device" not in argv
