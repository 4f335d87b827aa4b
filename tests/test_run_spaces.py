"""``nasrank run`` on every non-default registered space finishes on digits with every output
file (tiny settings), leaves the process's global state alone (RNGs, matplotlib, process group,
threads), and the library imports stay light (``nasrank.supernet`` lazily exports its API)."""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch
import torch.distributed as dist

from nasrank.search.cli import main
from nasrank.spaces.labels import LabelTable
from nasrank.spaces.registry import SPACES

BUDGET, ARCHS = 3, 6
TINY = ["--archs", str(ARCHS), "--budget", str(BUDGET), "--epochs", "1", "--supernet-epochs", "1",
        "--pretrain-epochs", "2", "--finetune-epochs", "2", "--batch-size", "128",
        "--image-size", "8", "--proxies", "synflow", "--method.rounds", "1",
        "--method.pool-size", "30", "--device", "cpu", "--seed", "1"]
OUTPUTS = ("config.json", "weak_labels.csv", "predictor.pt", "search.jsonl", "random.jsonl",
           "results.json", "queries.csv", "predicted_vs_true.png", "best_so_far.png",
           "weak_label_correlation.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def global_state() -> dict:
    """Everything a library call must leave as it found it."""
    plt = sys.modules.get("matplotlib.pyplot")
    return {
        "torch_rng": torch.get_rng_state().numpy().tobytes(),
        "numpy_rng": pickle.dumps(np.random.get_state()),
        "python_rng": pickle.dumps(random.getstate()),
        # the raw rcParams entry: reading it through rcParams[...] would resolve the backend
        "mpl_backend": dict.__getitem__(matplotlib.rcParams, "backend"),
        "pyplot_figures": tuple(plt.get_fignums()) if plt is not None else (),
        "process_group": dist.is_available() and dist.is_initialized(),
        "threads": torch.get_num_threads(),
    }


@pytest.mark.parametrize("space", ["cvpr2021", "mbconv", "nb101"])
def test_run_finishes_with_every_output(space, tmp_path):
    out = tmp_path / space
    torch.manual_seed(1234)  # the test's own state, which the run must not touch
    np.random.seed(1234)
    random.seed(1234)
    before = global_state()
    assert main(["--quiet", "run", "--space", space, "--out", str(out), *TINY]) == 0
    assert global_state() == before
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in ("predicted_vs_true.png", "best_so_far.png", "weak_label_correlation.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"predictor search", "random"}
    for m in results["methods"].values():
        assert m["queries"] == BUDGET and 0.0 <= m["best_valid_acc"] <= 1.0
        assert m["best_so_far"] == sorted(m["best_so_far"])  # best so far never drops
    # every trained architecture is a row of queries.csv (method, order, key, accuracies...)
    lines = (out / "queries.csv").read_text().splitlines()
    assert lines[0].startswith("method,order,key,valid_acc") and len(lines) == 1 + 2 * BUDGET
    for rec in ("search.jsonl", "random.jsonl"):
        assert sum(1 for ln in (out / rec).read_text().splitlines() if ln.strip()) >= BUDGET
    sp = SPACES.make(space).build()
    table = LabelTable.read_csv(out / "weak_labels.csv", space=space)
    assert len(table) == ARCHS
    assert [sp.key(a) for a in table.architectures(sp)] == table.keys  # the 'arch' column
    if space == "nb101":  # no supernet serves it: proxies and cost only
        assert not (out / "supernet").exists()
        assert table.names == ["zc_synflow", "zc_flops", "zc_params"]
    else:
        assert (out / "supernet" / "supernet.pt").is_file()
        assert table.names == ["ws_acc", "ws_neg_loss", "flops", "params", "zc_synflow"]
    config = json.loads((out / "config.json").read_text())
    assert config["space"]["name"] == space


def test_run_pool_defaults_are_sized_for_the_cpu():
    from nasrank.search.registry import SEARCH_METHODS
    from nasrank.search.stages import RUN_POOL_SAMPLES, method_for_run, run_pool_size

    nb201 = SPACES.make("nb201").build()
    assert run_pool_size(nb201) == 15_625  # the whole space (9,445 distinct cells)
    for name in ("cvpr2021", "mbconv", "nb101"):
        assert run_pool_size(SPACES.make(name).build()) == RUN_POOL_SAMPLES == 2_000
    mb = SPACES.make("mbconv").build()
    default = SEARCH_METHODS.make("iterative")
    assert default.pool_size == 100_000 and method_for_run(default, mb).pool_size == 2_000
    mine = SEARCH_METHODS.make("iterative", {"pool_size": 500})
    assert method_for_run(mine, mb).pool_size == 500  # the user's value wins
    re = SEARCH_METHODS.make("re")
    assert method_for_run(re, mb) is re  # no pool: unchanged


def test_plots_leave_matplotlib_and_pyplot_alone(tmp_path):
    """In a fresh interpreter: the plots neither import pyplot nor switch the backend."""
    code = (
        "import sys, matplotlib\n"
        "raw = dict.__getitem__(matplotlib.rcParams, 'backend')\n"
        "from nasrank.search import plots\n"
        f"out = {str(tmp_path)!r}\n"
        "plots.scatter_predicted_vs_true(out + '/a.png', [1, 2, 3, 4], [2, 1, 4, 3], top_k=2)\n"
        "plots.best_so_far_curves(out + '/b.png', {'x': [0.1, 0.3, 0.3]})\n"
        "m = plots.correlation_heatmap(out + '/c.png', {'u': [1, 2, 3, 4], 'v': [4, 3, 2, 1]})\n"
        "assert abs(m[0, 1] + 1) < 1e-12, m\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == raw\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)
    for name in "abc":
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG_MAGIC


def test_supernet_package_exports_its_api_lazily():
    code = (
        "import sys\n"
        "import nasrank.supernet as s, nasrank.supernet.registry\n"
        "assert 'torch' not in sys.modules, 'import nasrank.supernet imported torch'\n"
        "from nasrank.supernet import Supernet, train_supernet, generate_weak_labels\n"
        "from nasrank.supernet import load_dataset, score, UniformSampler, StrictFairSampler\n"
        "from nasrank.supernet.trainer import train_supernet as t\n"
        "assert t is train_supernet and 'torch' in sys.modules\n"
        "missing = [n for n in s.__all__ if getattr(s, n, None) is None]\n"
        "assert not missing, missing\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=600)



def test_all_archs_labels_every_nb201_cell(monkeypatch, tmp_path):
    """``weak-labels --all-archs``: all 5^6 NB201 cells go to the labeller (which keeps one
    per canonical key); a space too large to enumerate is refused by name."""
    from types import SimpleNamespace

    import nasrank.supernet.weak_labels as wl
    from nasrank.errors import ConfigError
    from nasrank.search import stages
    from nasrank.spaces.cvpr2021 import CVPR2021Space
    from nasrank.spaces.nb201 import NB201Space

    space = NB201Space()
    seen = {}

    def fake_generate(supernet, archs, data, path, **kw):
        seen["archs"] = list(archs)
        return "table"

    monkeypatch.setattr(wl, "generate_weak_labels", fake_generate)
    plan = SimpleNamespace(num_archs=3, proxies=(), all_archs=True)
    ctx = stages.StageContext(tmp_path, "cpu", stages.Seeds(0))
    res = stages.weak_label_stage(plan, space, None, SimpleNamespace(supernet=object()), ctx)
    texts = {space.format(a) for a in seen["archs"]}
    assert len(seen["archs"]) == len(texts) == 5 ** 6  # 5 ops on 6 edges
    assert "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|" in texts
    # keys are canonical: the 9,445 cells of the published NB201 tables' canonical subset
    assert len({space.key(a) for a in seen["archs"]}) == 9445
    assert res.table == "table"
    with pytest.raises(ConfigError, match="'cvpr2021' has 1,1"):
        stages.every_arch(CVPR2021Space())
