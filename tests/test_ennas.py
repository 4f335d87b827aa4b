"""EnNAS: simplex teacher weights against a brute-force grid, the distillation loss by hand,
operator diversity on a toy supernet with known cosines, equal marginals of diversity sampling
(exact and Monte Carlo), and a killed EnNAS run that resumes bitwise."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from nasrank.errors import NasrankError
from nasrank.supernet.base import Supernet
from nasrank.supernet.datasets import load_dataset
from nasrank.supernet.ennas import (DiversitySampler, EnsembleKDStrategy, calibrate,
                                    ensemble_kd_loss, ensemble_weights, inclusion_probabilities,
                                    operator_diversity)
from nasrank.supernet.nb201_supernet import NB201Supernet
from nasrank.supernet.registry import SAMPLERS, STEP_STRATEGIES
from nasrank.supernet.trainer import load_supernet, train_supernet


# ----------------------------------------------------------------------------- teacher
def _ce(w, z, y):
    t = sum(wi * zi for wi, zi in zip(w, z))
    return float(nn.functional.cross_entropy(t, y))


@pytest.mark.parametrize("m, step", [(2, 0.002), (3, 0.01)])
def test_ensemble_weights_beat_a_brute_force_grid(m, step):
    g = torch.Generator().manual_seed(m)
    for trial in range(3):
        z = torch.randn(m, 24, 4, generator=g, dtype=torch.float64) * 2
        y = torch.randint(0, 4, (24,), generator=g)
        w = ensemble_weights(z, y)
        assert w.shape == (m,) and np.all(w >= 0) and w.sum() == pytest.approx(1.0)
        k = round(1 / step)
        grid = [np.array(c + (k - sum(c),)) / k
                for c in itertools.product(range(k + 1), repeat=m - 1) if sum(c) <= k]
        values = [_ce(v, z, y) for v in grid]
        best = grid[int(np.argmin(values))]
        assert _ce(w, z, y) <= min(values) + 1e-9
        # convex with a unique minimiser here: the solver sits within a grid cell of it
        assert np.max(np.abs(w - best)) <= 2 * step + 1e-9


def test_teacher_weight_goes_to_the_perfect_subnet():
    y = torch.tensor([0, 1, 2, 1])
    good = nn.functional.one_hot(y, 3).double() * 20
    bad = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = ensemble_weights(torch.stack([bad, good, bad.flip(0)]), y)
    assert w[1] > 0.99


def test_kd_loss_by_hand():
    z = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[0.0, 1.0]])
    y = torch.tensor([0])
    # CE = log(1 + e^-1); p = softmax(t/2), q = softmax(z/2) are mirror images with
    # log(p1/q1) = 0.5, so KL(p||q) = 0.5 * (sigmoid(0.5) - sigmoid(-0.5)) = 0.5 * tanh(0.25)
    expected = math.log(1 + math.exp(-1)) + 4 * 0.5 * math.tanh(0.25)
    assert float(ensemble_kd_loss(z, t, y, 2.0)) == pytest.approx(expected, rel=1e-6)
    assert float(ensemble_kd_loss(z, z, y, 3.0)) == pytest.approx(math.log(1 + math.exp(-1)),
                                                                  rel=1e-6)


class _FixedLogits(Supernet):
    """A 'supernet' whose path i outputs logits[i] * scale (scale is its one parameter)."""

    def __init__(self, logits):
        super().__init__()
        self.space = SimpleNamespace(name="fixed", key=str)
        self.logits = logits
        self.scale = nn.Parameter(torch.ones(()))

    def decisions(self):
        return [list(range(len(self.logits)))]

    def arch_from_choices(self, indices):
        return int(indices[0])

    def choices_of(self, arch):
        return [arch]

    def check_arch(self, arch):
        return arch

    def forward(self, x, arch):
        return self.logits[arch] * self.scale

    def subnet(self, arch):
        raise NotImplementedError

    def config(self):
        return {"space": "fixed"}


def test_strategy_loss_uses_the_weighted_teacher():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    net = _FixedLogits(logits)
    strat = STEP_STRATEGIES.make("ennas_kd", {"tau": 2.0}).build(net)
    strat.begin_step(net, None, y, [0, 1, 2])
    w = ensemble_weights(logits, y)
    teacher = sum(float(w[i]) * logits[i] for i in range(3))
    for i in range(3):
        got = strat.loss(net, None, y, i, i)
        assert float(got.detach()) == pytest.approx(float(ensemble_kd_loss(logits[i], teacher, y, 2.0)),
                                           rel=1e-5)
        got.backward()  # the graph of the cached forward is used
    assert net.scale.grad is not None
    t_acc, s_acc = strat.accuracies()
    assert t_acc == float((teacher.argmax(1) == y).float().mean())
    assert s_acc == pytest.approx(float((logits.argmax(2) == y).float().mean()))
    with pytest.raises(NasrankError):
        EnsembleKDStrategy(tau=0)


# ----------------------------------------------------------------------------- diversity
class _ToyChain(Supernet):
    """x -> linear -> choice (0: identity, 1: identity copy, 2: negation, 3: ReLU) -> head."""

    def __init__(self):
        super().__init__()
        self.space = SimpleNamespace(name="toychain", key=str)
        self.stem = nn.Linear(5, 6)
        self.head = nn.Linear(6, 2)
        self.ops = nn.ModuleList([nn.Identity(), nn.Identity(), _Neg(), nn.ReLU()])

    def decisions(self):
        return [["id", "id2", "neg", "relu"]]

    def choice_modules(self, decision, choice):
        return [self.ops[choice]]

    def arch_from_choices(self, indices):
        return int(indices[0])

    def choices_of(self, arch):
        return [arch]

    def check_arch(self, arch):
        return arch

    def forward(self, x, arch):
        return self.head(self.ops[arch](self.stem(x)))

    def subnet(self, arch):
        raise NotImplementedError

    def config(self):
        return {"space": "toychain", "in_channels": 5}


class _Neg(nn.Module):
    def forward(self, x):
        return -x


def test_operator_diversity_on_known_cosines():
    torch.manual_seed(0)
    net = _ToyChain()
    x = torch.randn(10, 5, generator=torch.Generator().manual_seed(3))
    (div,) = operator_diversity(net, x, np.random.default_rng(0), paths=2)
    h = net.stem(x).detach()
    relu_vs_id = float(nn.functional.cosine_similarity(torch.relu(h), h, dim=1).mean())
    expected = np.array([[0, 0, 2, 1 - relu_vs_id], [0, 0, 2, 1 - relu_vs_id],
                         [2, 2, 0, 1 + relu_vs_id], [1 - relu_vs_id, 1 - relu_vs_id,
                                                     1 + relu_vs_id, 0]])
    assert np.allclose(div, expected, atol=1e-6)


def test_nb201_diversity_none_is_orthogonal_and_bn_untouched():
    torch.manual_seed(0)
    net = NB201Supernet(10, C=4, N=1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    divs = operator_diversity(net, x, np.random.default_rng(0), paths=1)
    assert len(divs) == 6
    for d in divs:
        assert np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
        assert np.allclose(d[0, 1:], 1.0)  # 'none' outputs zeros: cosine 0 with anything
        assert np.all((d >= -1e-9) & (d <= 2 + 1e-9))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def _div5():
    rng = np.random.default_rng(5)
    a = rng.uniform(0.2, 1.5, (5, 5))
    d = (a + a.T) / 2
    d[0, :] *= 0.1  # op 0 close to everything: diversity alone would rarely pick it
    d[:, 0] *= 0.1
    np.fill_diagonal(d, 0)
    return d


def test_inclusion_probabilities_match_monte_carlo():
    d = _div5()
    pi = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
    exact = inclusion_probabilities(d, pi, 3)
    assert exact.sum() == pytest.approx(3.0)
    rng = np.random.default_rng(0)
    n, counts = 20000, np.zeros(5)
    for _ in range(n):  # independent sequential sampler
        drawn = []
        for _ in range(3):
            w = pi.copy() if not drawn else pi * d[:, drawn].mean(axis=1)
            w[drawn] = 0
            drawn.append(int(rng.choice(5, p=w / w.sum())))
        counts[drawn] += 1
    sd = np.sqrt(n * exact * (1 - exact))
    assert np.all(np.abs(counts - n * exact) < 5 * sd)


@pytest.mark.parametrize("m", [2, 3, 4, 7])
def test_diversity_sampling_has_equal_marginals(m):
    torch.manual_seed(0)
    net = NB201Supernet(10, C=4, N=1)
    sampler = DiversitySampler(net, m, refresh_every=10**9, probe_hw=8)
    d = _div5()
    sampler.diversity = [d] * 6
    sampler.pi = [calibrate(d, m % 5)] * 6
    if m % 5:
        assert np.allclose(inclusion_probabilities(d, sampler.pi[0], m % 5), (m % 5) / 5)
        # without calibration the marginals are unequal (op 0 is rarely drawn)
        raw = inclusion_probabilities(d, np.full(5, 0.2), m % 5)
        assert raw[0] < (m % 5) / 5 - 0.05
    rng = np.random.default_rng(1)
    n = 6000
    counts = np.zeros(5)
    pair = np.zeros((5, 5))
    for _ in range(n):
        picks = sampler.draw(0, rng)
        assert len(picks) == m
        for c in picks:
            counts[c] += 1
        for i, j in itertools.combinations(sorted(set(picks)), 2):
            pair[i, j] += 1
    # each op appears m/5 times per step on average; per-step count = m//5 + Bernoulli(r/5)
    r = (m % 5) / 5
    sd = np.sqrt(n * r * (1 - r)) if r else 0.0
    assert np.all(np.abs(counts - n * m / 5) <= 5 * sd + 1e-9)
    if m in (2, 3):  # diversity shows in which ops are drawn together
        i_hi = np.unravel_index(np.argmax(np.triu(d[1:, 1:], 1)), (4, 4))
        i_lo = np.unravel_index(np.argmin(np.triu(d[1:, 1:], 1) + np.tril(np.full((4, 4), 9))),
                                (4, 4))
        assert pair[1 + i_hi[0], 1 + i_hi[1]] > pair[1 + i_lo[0], 1 + i_lo[1]]


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    return load_dataset("digits", seed=0, subset=64, channels=3)


def test_ennas_run_resumes_bitwise(digits, tmp_path):
    def run(ckpt=None, kill=None):
        torch.manual_seed(0)
        net = NB201Supernet(10, C=4, N=1)
        sampler = SAMPLERS.make("ennas_diversity", {"m": 3, "probe_size": 4}).build(net)
        strat = STEP_STRATEGIES.make("ennas_kd", {"tau": 2.0}).build(net)
        train_supernet(net, digits, sampler, strategy=strat, epochs=2, batch_size=32, lr=0.05,
                       seed=4, checkpoint_dir=ckpt, progress=False, on_epoch_end=kill)
        return net, sampler, strat

    full, fs, fst = run()

    def kill(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, kill)
    after_one = NB201Supernet(10, C=4, N=1)
    load_supernet(after_one, tmp_path)  # the weights at the start of the last epoch
    resumed, rs, rst = run(tmp_path)
    for (k, v), w in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k
    assert fs.state_dict() == rs.state_dict() and fs.calls == 4
    # the trainer refreshed the diversity at the start of the last epoch, on trained weights
    torch.manual_seed(0)
    init = DiversitySampler(NB201Supernet(10, C=4, N=1), 3, probe_size=4)
    init.begin_epoch(1, digits.train)
    assert not np.allclose(init.diversity[0], fs.diversity[0])
    trained = DiversitySampler(after_one, 3, probe_size=4)
    trained.begin_epoch(1, digits.train)
    assert all(np.array_equal(a, b) for a, b in zip(trained.diversity, fs.diversity))
    assert fst.state_dict() == rst.state_dict()
    assert fst.stats["images"] == 4 * 32


def test_config_errors_name_the_value():
    net = NB201Supernet(10, C=4, N=1)
    with pytest.raises(NasrankError, match="m = 0"):
        SAMPLERS.make("ennas_diversity", {"m": 0})
    with pytest.raises(NasrankError, match="tau"):
        STEP_STRATEGIES.make("ennas_kd", {"tau": -1})
    with pytest.raises(NasrankError, match="probe_size"):
        DiversitySampler(net, 2, probe_size=1)


def test_ennas_on_the_mbconv_chain(digits):
    from nasrank.spaces.mbconv import MBConvSpace
    from nasrank.supernet.mbconv_supernet import MBConvSupernet

    torch.manual_seed(0)
    space = MBConvSpace(stem=4, widths=(4, 8), depths=(2, 3), strides=(1, 2), head=16)
    net = MBConvSupernet(space, num_classes=10)
    sampler = SAMPLERS.make("ennas_diversity", {"m": 3, "probe_size": 4}).build(net)
    strat = STEP_STRATEGIES.make("ennas_kd").build(net)
    train_supernet(net, digits, sampler, strategy=strat, epochs=1, batch_size=32, lr=0.05,
                   seed=1, progress=False)
    counts = [len(o) for o in net.decisions()]
    assert [d.shape[0] for d in sampler.diversity] == counts
    for d, pi, k in zip(sampler.diversity, sampler.pi, counts):
        assert np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
        assert np.allclose(inclusion_probabilities(d, pi, 3 % k), (3 % k) / k)
    assert strat.stats["images"] == 2 * 32 and sampler.calls == 2


# ----------------------------------------------------------------------------- DDP
class _DDPToy(Supernet):
    """Flattened 8x8 digits -> one of 3 hidden layers -> one of 2 heads (no BatchNorm, so two
    DDP ranks on half batches must match one process exactly)."""

    def __init__(self):
        super().__init__()
        self.space = SimpleNamespace(name="ddptoy", key=str)
        self.hidden = nn.ModuleList(nn.Linear(64, 16) for _ in range(3))
        self.head = nn.ModuleList(nn.Linear(16, 10) for _ in range(2))

    def decisions(self):
        return [[0, 1, 2], [0, 1]]

    def choice_modules(self, decision, choice):
        return [(self.hidden, self.head)[decision][choice]]

    def arch_from_choices(self, indices):
        return tuple(self.check_choices(indices))

    def choices_of(self, arch):
        return list(arch)

    def check_arch(self, arch):
        return tuple(arch)

    def forward(self, x, arch):
        return self.head[arch[1]](torch.relu(self.hidden[arch[0]](x.flatten(1))))

    def subnet(self, arch):
        raise NotImplementedError

    def config(self):
        return {"space": "ddptoy"}


def _ddp_run(out, world):
    import os

    torch.manual_seed(0)
    torch.set_num_threads(1)
    data = load_dataset("digits", seed=0, subset=128)
    net = _DDPToy()
    sampler = DiversitySampler(net, 2, probe_size=8)
    strat = EnsembleKDStrategy(tau=2.0)
    train_supernet(net, data, sampler, strategy=strat, epochs=2, batch_size=32, lr=0.1, seed=1,
                   progress=False)
    rank = int(os.environ.get("RANK", "0"))
    torch.save({"model": net.state_dict(), "pi": sampler.state_dict()["pi"]},
               os.path.join(out, f"ennas_{world}_{rank}.pt"))


def _ddp_worker(rank, world, port, out):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    try:
        _ddp_run(out, world)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_ennas_under_ddp_matches_one_process(tmp_path):
    """Two gloo ranks (teacher weights solved on the gathered global batch) == one process."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    _ddp_run(str(tmp_path), 1)
    single = torch.load(tmp_path / "ennas_1_0.pt")
    for rank in (0, 1):
        ddp = torch.load(tmp_path / f"ennas_2_{rank}.pt")
        for a, b in zip(ddp["pi"], single["pi"]):  # same diversity on every rank
            assert np.allclose(a, b)
        for k, v in single["model"].items():
            assert torch.allclose(v, ddp["model"][k], atol=1e-5), (rank, k)
