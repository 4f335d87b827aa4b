"""Start-up (issue 19): `nasrank --help`, the help of the torch-free commands and `nasrank spaces`
import neither torch nor PyG (checked on sys.modules in a fresh interpreter, not timed); the
networks moved to nasrank.spaces.networks stay importable, and unpicklable, by their old paths."""

from __future__ import annotations

import math

import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# main() returns the exit status, or argparse's --help raises SystemExit(0); each run is
# preceded by a line "=== argv"
PROBE = """
import sys
from nasrank.search.cli import main
for argv in {runs!r}:
    print("===", " ".join(argv), flush=True)
    try:
        code = main(argv)
    except SystemExit as err:
        code = err.code
    sys.stdout.flush()
    assert code in (0, None), f"{{argv}}: exit status {{code!r}}"
heavy = sorted(m for m in ("torch", "torch_geometric", *{absent!r}) if m in sys.modules)
assert not heavy, f"imported {{heavy}}"
"""

#: every command: their options come from torch-free registries (the ranking losses from
#: predictor/loss_configs.py, the supernets, samplers and step strategies from supernet/configs.py)
LIGHT_COMMANDS = ("search", "benchmark", "spaces", "convert", "weak-labels", "pretrain",
                  "predict", "groundtruth", "supernet-eval", "finetune", "run", "supernet-train",
                  "proxies", "fewshot")


def _python(code: str) -> str:
    """The stdout of ``code`` run in a fresh interpreter (which must exit with status 0)."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _run(*runs: list[str], absent: tuple[str, ...] = ()) -> dict[str, str]:
    """The output of each run of ``main`` in one fresh interpreter, by its argv; torch, PyG and
    the modules named in ``absent`` must not have been imported."""
    stdout = _python(PROBE.format(runs=list(runs), absent=absent))
    parts = re.split(r"^=== ", stdout, flags=re.M)[1:]
    return {p.split("\n", 1)[0]: p.split("\n", 1)[1] for p in parts}


def test_spaces_imports_no_torch_and_lists_every_space_with_its_size():
    out = _run(["spaces"])["spaces"]
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    # NB201: 5^6 cells; NB101: 423,624 unique cells (Ying et al. 2019); CVPR 2021: the product
    # of the choices (4 x 7, 8 x 6, 16 x 7 widths); mbconv: prod_s 6 (6^d_s - 1) / 5 for 2/3/3/2
    mbconv = 1
    for d in (2, 3, 3, 2):
        mbconv *= 6 * (6 ** d - 1) // 5
    assert rows == {"nb201": f"{5 ** 6:,}", "cvpr2021": f"{4 ** 7 * 8 ** 6 * 16 ** 7:.2e}"
                    .replace("e+", "e"), "mbconv": f"{mbconv:,}", "nb101": "423,624"}


def test_help_imports_no_torch():
    outs = _run(["--help"], *([cmd, "--help"] for cmd in LIGHT_COMMANDS))
    assert "spaces" in outs["--help"] and "search" in outs["--help"]
    for cmd in LIGHT_COMMANDS:
        assert outs[f"{cmd} --help"].startswith(f"usage: nasrank {cmd}"), outs[f"{cmd} --help"]
    assert "--budget" in outs["search --help"]
    assert "--loss NAME" in outs["finetune --help"] and "--loss.margin" in outs["finetune --help"]
    assert "--sampler.arch-batch" in outs["run --help"] and "--supernet.bn" in outs["run --help"]


def test_search_help_imports_neither_scipy_stats_nor_optuna():
    # the SEARCH_METHODS loader imports every module of nasrank.search: scipy.stats (seconds)
    # and Optuna are imported where they are used, the Optuna sampler class lives in a private
    # module (loaders skip '_' modules) and resolves by its public path
    out = _run(["search", "--help"], absent=("scipy.stats", "optuna"))["search --help"]
    assert "--method" in out and "optuna" in out
    check = ("import sys\n"
             "from nasrank.search import optuna_search\n"
             "assert 'optuna' not in sys.modules\n"
             "from nasrank.search.optuna_search import PredictorSampler, space_distributions\n"
             "from optuna.samplers import BaseSampler\n"
             "from nasrank.search import PredictorSampler as P\n"
             "assert issubclass(PredictorSampler, BaseSampler) and P is PredictorSampler\n"
             "try:\n    optuna_search.no_such_name\n"
             "except AttributeError as e:\n    assert 'no_such_name' in str(e)\n"
             "else:\n    raise AssertionError\n")
    _python(check)


def test_ranking_loss_configs_build_the_losses_and_keep_their_old_import_path():
    # the RANKING_LOSSES loader imports only predictor/loss_configs.py (torch-free); build()
    # imports the loss functions when called
    _python("import sys\n"
            "from nasrank.predictor.registry import RANKING_LOSSES\n"
            "assert RANKING_LOSSES.names() == ['lambdarank', 'ranknet', 'margin', 'mse'], "
            "RANKING_LOSSES.names()\n"
            "assert 'torch' not in sys.modules\n")
    import torch

    from nasrank.predictor import losses
    from nasrank.predictor.registry import RANKING_LOSSES

    for name, cls in (("lambdarank", losses.LambdaRankConfig), ("ranknet", losses.RankNetConfig),
                      ("margin", losses.MarginConfig), ("mse", losses.MSEConfig)):
        assert RANKING_LOSSES.get(name) is cls
    assert RANKING_LOSSES.make("ranknet", {}).build() is losses.ranknet_loss
    hinge = RANKING_LOSSES.make("margin", {"margin": 0.5}).build()
    # two entries, scores 0 / 1 against relevance 1 / 0: one pair wrong by 1, hinge 0.5 + 1
    assert float(hinge(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]))) == \
        pytest.approx(1.5)
    assert RANKING_LOSSES.make("margin", {"margin": 0.5}).fit_kwargs() == {"loss": "margin",
                                                                          "margin": 0.5}
    assert RANKING_LOSSES.make("lambdarank", {"gain": "linear"}).fit_kwargs() == {
        "loss": "lambdarank", "gain": "linear", "mu": 0.0}
    # linear gain on a 2-list, scores 0 / 1 vs relevance 1 / 0: |dNDCG| = 1 - 1/log2(3) (the
    # swap), times log2(1 + e)
    lin = RANKING_LOSSES.make("lambdarank", {"gain": "linear"}).build()
    assert float(lin(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]))) == pytest.approx(
        (1 - 1 / math.log2(3)) * math.log2(1 + math.e), rel=1e-6)
    with pytest.raises(Exception, match="gain"):
        RANKING_LOSSES.make("lambdarank", {"gain": "square"})


def test_supernet_registries_load_no_torch_and_keep_their_entries_and_import_paths():
    # the loader imports only supernet/configs.py; the configs stay importable from the modules
    # of their implementations, and build() imports those
    out = _python("import sys\n"
                  "from nasrank.supernet.registry import SAMPLERS, STEP_STRATEGIES, SUPERNETS\n"
                  "print((SUPERNETS.names(), SAMPLERS.names(), STEP_STRATEGIES.names()))\n"
                  "assert 'torch' not in sys.modules\n")
    # the order of the registrations (CLI choices, help) is the one of before the move
    assert out.strip() == str((["cvpr2021", "mbconv", "nb201"],
                                      ["uniform", "fair", "ennas_diversity", "restricted_uniform",
                                       "rdnas"],
                                      ["ce", "running_teacher", "fixed_teacher", "ennas_kd",
                                       "rdnas"]))
    from nasrank.supernet import base, channel, distill, ennas, fewshot, mbconv_supernet
    from nasrank.supernet import nb201_supernet, rdnas
    from nasrank.supernet.registry import SAMPLERS, STEP_STRATEGIES, SUPERNETS

    for reg, name, module, cls in (
            (SUPERNETS, "nb201", nb201_supernet, "NB201SupernetConfig"),
            (SUPERNETS, "cvpr2021", channel, "ChannelSupernetConfig"),
            (SUPERNETS, "mbconv", mbconv_supernet, "MBConvSupernetConfig"),
            (SAMPLERS, "uniform", base, "UniformSamplerConfig"),
            (SAMPLERS, "fair", base, "FairSamplerConfig"),
            (SAMPLERS, "restricted_uniform", fewshot, "RestrictedUniformConfig"),
            (SAMPLERS, "ennas_diversity", ennas, "DiversitySamplerConfig"),
            (SAMPLERS, "rdnas", rdnas, "MarginPairSamplerConfig"),
            (STEP_STRATEGIES, "ce", base, "CrossEntropyConfig"),
            (STEP_STRATEGIES, "running_teacher", distill, "RunningTeacherConfig"),
            (STEP_STRATEGIES, "fixed_teacher", distill, "FixedTeacherConfig"),
            (STEP_STRATEGIES, "ennas_kd", ennas, "EnsembleKDConfig"),
            (STEP_STRATEGIES, "rdnas", rdnas, "RankingDistillConfig")):
        assert reg.get(name) is getattr(module, cls), name
    from nasrank.spaces.nb201 import NB201Space

    sup = SUPERNETS.make("nb201", {"channels": 4}).build(NB201Space(), num_classes=3)
    assert isinstance(sup, nb201_supernet.NB201Supernet)
    assert isinstance(SAMPLERS.make("fair", {}).build(sup), base.StrictFairSampler)
    assert type(STEP_STRATEGIES.make("ce", {}).build(sup)) is base.StepStrategy
    assert channel.SHARING_SCHEMES == ("full", "front", "end", "independent")


def test_version_is_read_from_the_metadata_only_when_asked_for():
    # nasrank.__version__ is a lazy module attribute: --help does not import importlib.metadata
    _run(["--help"], absent=("importlib.metadata",))
    _python("import sys, nasrank; "
            "assert 'importlib.metadata' not in sys.modules; "
            "from importlib.metadata import version; "
            "assert nasrank.__version__ == version('nasrank'), nasrank.__version__; "
            "assert '__version__' in vars(nasrank)")
    import nasrank

    with pytest.raises(AttributeError, match="no_such_name"):
        nasrank.no_such_name  # noqa: B018


def test_network_names_resolve_from_the_space_modules_and_old_pickles():
    from nasrank.spaces import cvpr2021, mbconv, nb101, nb201
    from nasrank.spaces.networks import cvpr2021 as net_cvpr2021
    from nasrank.spaces.networks import mbconv as net_mbconv
    from nasrank.spaces.networks import nb101 as net_nb101
    from nasrank.spaces.networks import nb201 as net_nb201

    pairs = [(nb201, net_nb201, ("ReLUConvBN", "Zero", "make_op", "NB201Cell",
                                 "ResidualReduction", "add_macro_skeleton", "NB201Network")),
             (cvpr2021, net_cvpr2021, ("BasicBlock", "CVPR2021ResNet")),
             (mbconv, net_mbconv, ("MBConv", "make_layer_op", "add_skeleton", "MBConvNetwork")),
             (nb101, net_nb101, ("ConvBNReLU", "NB101Cell", "NB101Network"))]
    for old, new, names in pairs:
        for name in names:
            assert getattr(old, name) is getattr(new, name)
        with pytest.raises(AttributeError, match="no_such_name"):
            old.no_such_name  # noqa: B018
    # a pickle that names a class by its old module path still loads
    assert pickle.loads(b"cnasrank.spaces.nb201\nNB201Network\n.") is net_nb201.NB201Network
    net = nb201.NB201Space().build(nb201.NB201Space().parse(
        "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"), C=4, N=1)
    assert type(pickle.loads(pickle.dumps(net))) is net_nb201.NB201Network
