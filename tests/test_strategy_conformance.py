"""Conformance of every registered architecture sampler and step strategy (SAMPLERS,
STEP_STRATEGIES of nasrank.supernet.registry), each with its config's defaults on a tiny supernet:

- samplers: the same rng state gives the same architectures (two independent builds), and a
  checkpoint round trip (``state_dict`` -> a fresh build on a fresh supernet ->
  ``load_state_dict``, through ``torch.save``) continues with the same samples;
- step strategies: two runs from the same weights give the same losses, and a run resumed from
  an end-of-epoch checkpoint (weights + strategy state, like the trainer's) gives the same
  losses as the uninterrupted run.

A new entry is picked up by itself. Entries that cannot run on their defaults get the missing
inputs from ``REQUIRED`` (a teacher table, a warm-up); an entry for a space other than NB201
names it in a ``space`` class attribute and gets that space's registered supernet.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import numpy as np
import pytest
import torch

from nasrank.spaces.labels import LabelTable
from nasrank.spaces.registry import SPACES
from nasrank.supernet.registry import SAMPLERS, STEP_STRATEGIES, SUPERNETS

NUM_CLASSES = 10
#: the smallest sizes of each space's supernet that still exercise every decision point
TINY_SUPERNET = {"nb201": {"channels": 4, "cells": 1}}


@pytest.fixture(scope="module")
def teacher_table(tmp_path_factory) -> str:
    """A zero-cost teacher table (zc_nwot) over 40 NB201 cells with distinct, hand-set scores:
    what the RD-NAS entries read instead of scoring a pool on the fly."""
    space = SPACES.make("nb201").build()
    rng = np.random.default_rng(7)
    keys: list[str] = []
    while len(keys) < 40:
        k = space.key(space.sample(rng))
        if k not in keys:
            keys.append(k)
    path = tmp_path_factory.mktemp("teacher") / "zc.csv"
    LabelTable(keys, {"zc_nwot": np.arange(40, dtype=np.float64)}, space="nb201").to_csv(path)
    return str(path)


def REQUIRED(kind: str, name: str, teacher_table: str) -> dict[str, Any]:
    """Options an entry needs beyond its defaults (everything else stays at its default)."""
    if name == "rdnas":
        return {"table": teacher_table}
    if kind == "strategy" and name == "fixed_teacher":
        return {"warmup_epochs": 1}  # exactly one of warm-up / teacher checkpoint is required
    return {}


def _space_of(cls: Any) -> str:
    space = getattr(cls, "space", "nb201")
    return space if isinstance(space, str) else "nb201"


def _supernet(space_name: str, seed: int = 0) -> Any:
    space = SPACES.make(space_name).build()
    return SUPERNETS.make(space_name, TINY_SUPERNET.get(space_name, {})).build(
        space, num_classes=NUM_CLASSES, in_channels=3, seed=seed)


def _keys(supernet: Any, archs: list) -> list[str]:
    return [supernet.space.key(a) for a in archs]


def _roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


# ----------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_same_rng_same_archs(name, teacher_table):
    cfg = SAMPLERS.make(name, REQUIRED("sampler", name, teacher_table))
    net = _supernet(_space_of(type(cfg)))
    runs = []
    for _ in range(2):
        sampler = cfg.build(net)
        rng = np.random.default_rng(123)
        runs.append([_keys(net, sampler.sample(rng)) for _ in range(4)])
    assert runs[0] == runs[1]
    assert all(len(step) >= 1 for step in runs[0])
    for step in runs[0]:  # every sample is an architecture of the space
        assert all(net.space.key(net.space.parse(k)) == k for k in step)
    other = cfg.build(net)
    rng = np.random.default_rng(124)
    assert [_keys(net, other.sample(rng)) for _ in range(4)] != runs[0]  # another seed


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_sampler_checkpoint_round_trip(name, teacher_table):
    cfg = SAMPLERS.make(name, REQUIRED("sampler", name, teacher_table))
    space_name = _space_of(type(cfg))
    net = _supernet(space_name)
    a = cfg.build(net)
    rng = np.random.default_rng(5)
    for _ in range(3):
        a.sample(rng)
    state = _roundtrip(a.state_dict())
    rng_state = copy.deepcopy(rng.bit_generator.state)
    expected = [_keys(net, a.sample(rng)) for _ in range(3)]

    net_b = _supernet(space_name, seed=1)      # a fresh process: weights come from the checkpoint
    net_b.load_state_dict(net.state_dict())
    b = cfg.build(net_b)
    assert b.config() == a.config()
    b.load_state_dict(state)
    rng_b = np.random.default_rng()
    rng_b.bit_generator.state = rng_state
    assert [_keys(net_b, b.sample(rng_b)) for _ in range(3)] == expected


# ----------------------------------------------------------------------------- strategies
def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, NUM_CLASSES, (4,), generator=g)


def _paired_sampler(name: str, teacher_table: str) -> Any:
    """The sampler a strategy is trained with: the sampler of the same name where one is
    registered (RD-NAS pairs come from its teacher's groups), else 2 uniform paths per step."""
    if name in SAMPLERS.names():
        return SAMPLERS.make(name, REQUIRED("sampler", name, teacher_table))
    return SAMPLERS.make("uniform", {"archs_per_step": 2})


def _epoch(net: Any, strategy: Any, sampler_cfg: Any, epoch: int, steps: int) -> list[float]:
    """``steps`` training steps of one epoch the way the trainer runs them (same batch for the
    step's paths, each loss divided by the number of paths, one plain SGD step)."""
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    sampler = sampler_cfg.build(net)
    rng = np.random.default_rng([11, epoch])
    net.train()
    strategy.begin_epoch(net, epoch)
    losses = []
    for step in range(steps):
        x, y = _batch(100 * epoch + step)
        paths = strategy.paths(sampler.sample(rng))
        opt.zero_grad(set_to_none=True)
        strategy.begin_step(net, x, y, paths)
        for i, arch in enumerate(paths):
            loss = strategy.loss(net, x, y, arch, i)
            if loss is None:
                continue
            (loss / len(paths)).backward()
            losses.append(float(loss.detach()))
        opt.step()
    assert losses and all(np.isfinite(losses))
    return losses


@pytest.mark.parametrize("name", STEP_STRATEGIES.names())
def test_strategy_deterministic_and_checkpoint_round_trip(name, teacher_table):
    cfg = STEP_STRATEGIES.make(name, REQUIRED("strategy", name, teacher_table))
    space_name = _space_of(type(cfg))
    scfg = _paired_sampler(name, teacher_table)

    def run_until_checkpoint() -> tuple[Any, Any]:
        net = _supernet(space_name)
        strategy = cfg.build(net)
        for epoch in range(2):  # past a warm-up epoch, so a frozen teacher is in the state
            _epoch(net, strategy, scfg, epoch, steps=1)
        return net, strategy

    net_a, strat_a = run_until_checkpoint()
    ckpt = _roundtrip({"weights": net_a.state_dict(), "strategy": strat_a.state_dict()})
    expected = _epoch(net_a, strat_a, scfg, 2, steps=2)

    net_c, strat_c = run_until_checkpoint()     # same weights, same rng: same losses
    assert _epoch(net_c, strat_c, scfg, 2, steps=2) == expected

    net_b = _supernet(space_name, seed=1)       # resumed: fresh build, state from the checkpoint
    net_b.load_state_dict(ckpt["weights"])
    strat_b = cfg.build(net_b)
    assert strat_b.config() == strat_a.config()
    strat_b.load_state_dict(ckpt["strategy"])
    assert _epoch(net_b, strat_b, scfg, 2, steps=2) == expected
