"""CUDA paths: the same computation on a GPU agrees with the CPU.

Every test here needs a CUDA device and is skipped without one (CI has none); they were run on
an H100 (see BENCHMARKS.md, "CUDA paths"). The CPU results are the independent reference: the
device argument must move all the work, and nothing may stay behind on the CPU or be lost on the
way back.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from nasrank.predictor import RankingPredictor, kendall_tau
from nasrank.spaces.base import sample_unique
from nasrank.spaces.nb201 import NB201Space

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def full_fp32_on_cuda():
    """Ampere+ GPUs run float32 convolutions in TF32 (10-bit mantissa) by default, which moves
    results by ~1e-3 relative; compare against the CPU in full float32, then restore."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


SMALL = {"hidden": 16, "embedding_dim": 16, "head_hidden": 16}


@pytest.fixture(scope="module")
def cells():
    return sample_unique(NB201Space(), 120, np.random.default_rng(0))


def _conv3x3_count(space, arch) -> float:
    """Hand-countable target: 3x3 convolutions on live edges of the canonical cell."""
    return float(space.key(arch).count("nor_conv_3x3"))


def test_predictor_checkpoint_predicts_the_same_on_cuda(cells, tmp_path):
    space = NB201Space()
    p = RankingPredictor(space, seed=0, **SMALL)
    y = np.array([_conv3x3_count(space, a) for a in cells[:40]])
    p.fit(cells[:40], y, loss="mse", epochs=3)
    p.save(tmp_path / "p.pt")
    q = RankingPredictor.load(tmp_path / "p.pt", space=space, device="cuda")
    assert next(q.net.parameters()).device.type == "cuda"
    np.testing.assert_allclose(q.predict(cells), p.predict(cells), rtol=1e-4, atol=1e-4)


def test_predictor_trains_on_cuda(cells):
    """Pretraining and fit run on the GPU and learn a hand-countable label."""
    space = NB201Space()
    y = np.array([_conv3x3_count(space, a) for a in cells])
    p = RankingPredictor(space, device="cuda", seed=0, **SMALL)
    p.pretrain(cells[:80], {"conv3x3": y[:80]}, epochs=30, batch_size=16)
    assert kendall_tau(y[80:], p.predict_labels(cells[80:])["conv3x3"]) > 0.8
    p.fit(cells[:80], y[:80], loss="lambdarank", epochs=20, lr=1e-3)
    assert kendall_tau(y[80:], p.predict(cells[80:])) > 0.6


def test_supernet_epoch_on_cuda_matches_cpu():
    from nasrank.supernet.base import UniformSampler
    from nasrank.supernet.datasets import load_dataset
    from nasrank.supernet.nb201_supernet import NB201Supernet
    from nasrank.supernet.trainer import train_supernet

    data = load_dataset("digits", seed=0, subset=128, channels=3)
    torch.manual_seed(0)
    cpu = NB201Supernet(10, C=4, N=1)
    gpu = copy.deepcopy(cpu)
    for net, dev in ((cpu, "cpu"), (gpu, "cuda")):
        train_supernet(net, data, UniformSampler(net), epochs=1, batch_size=32, lr=0.05,
                       device=dev, seed=0, progress=False)
    for (name, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        assert b.device.type == "cuda", name
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-4, msg=name)


def test_weak_labels_on_cuda_match_cpu(tmp_path):
    from nasrank.supernet.datasets import load_dataset
    from nasrank.supernet.nb201_supernet import NB201Supernet
    from nasrank.supernet.weak_labels import generate_weak_labels

    data = load_dataset("digits", seed=0, subset=128, channels=3)
    torch.manual_seed(0)
    net = NB201Supernet(10, C=4, N=1)
    archs = sample_unique(net.space, 4, np.random.default_rng(1))
    tables = {}
    for dev in ("cpu", "cuda"):
        tables[dev] = generate_weak_labels(
            net, archs, data, tmp_path / f"{dev}.csv", bn_batches=2, batch_size=32, device=dev,
            seed=0, proxies=["synflow", "nwot"], progress=False)
    a, b = tables["cpu"], tables["cuda"]
    assert a.keys == b.keys and len(a.keys) == 4
    for name in ("ws_neg_loss", "flops", "params", "zc_synflow", "zc_nwot"):
        np.testing.assert_allclose(b.column(name), a.column(name), rtol=1e-3, err_msg=name)
    # accuracy may differ by a tie flipped in float rounding: at most one validation image
    n_valid = len(data.valid)
    assert np.abs(b.column("ws_acc") - a.column("ws_acc")).max() <= 1.0 / n_valid + 1e-9


def test_proxies_on_cuda_match_cpu():
    from nasrank.supernet.proxies import score

    space = NB201Space()
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+"
                       "|nor_conv_3x3~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    torch.manual_seed(0)
    net = space.build(arch, 10, C=8, N=1)
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g))
    names = ["grad_norm", "snip", "grasp", "fisher", "synflow", "jacov", "nwot", "params"]
    before = copy.deepcopy(net.state_dict())
    on_cpu = score(net, batch, names, device="cpu", seed=0)
    on_gpu = score(net, batch, names, device="cuda", seed=0)
    for n in names:
        assert on_gpu[n] == pytest.approx(on_cpu[n], rel=2e-3, abs=1e-6), n
    net.cpu()
    for k, v in before.items():
        assert torch.equal(net.state_dict()[k].cpu(), v), k


def test_standalone_training_on_cuda_matches_cpu():
    from nasrank.supernet.datasets import load_dataset
    from nasrank.supernet.train import train_standalone

    space = NB201Space()
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+"
                       "|nor_conv_3x3~0|skip_connect~1|nor_conv_1x1~2|")
    data = load_dataset("digits", seed=0, subset=256, channels=3)
    res = {dev: train_standalone((space, arch), data, epochs=2, batch_size=32, lr=0.05, device=dev,
                                 seed=0, build_kwargs={"C": 4, "N": 1})
           for dev in ("cpu", "cuda")}
    assert res["cuda"].valid_loss == pytest.approx(res["cpu"].valid_loss, rel=1e-3)
    assert abs(res["cuda"].valid_acc - res["cpu"].valid_acc) <= 1.0 / len(data.valid) + 1e-9


def test_channel_supernet_forward_on_cuda_matches_cpu():
    from nasrank.supernet.channel import ChannelSupernet

    torch.manual_seed(0)
    net = ChannelSupernet("independent", num_classes=10).eval()
    rng = np.random.default_rng(0)
    x = torch.randn(4, 3, 32, 32)
    for _ in range(3):
        arch = net.space.sample(rng)
        with torch.no_grad():
            ref = net(x, arch)
            out = copy.deepcopy(net).to("cuda")(x.to("cuda"), arch).cpu()
        torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-4)
