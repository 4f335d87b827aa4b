"""The stages of the pipeline: each takes ``(config, inputs)`` and returns a typed result.

The configs are the registered ones (a space config, a supernet config...), the inputs the
results of earlier stages; the dataset is loaded once (:func:`load_data`) and handed on, and the
space comes from the space config, never from the supernet. Nothing here knows a space by name:
a new space or supernet registered in its own file runs through the same code.

Random streams: :class:`Seeds` derives one independent stream per stage from
``numpy.random.SeedSequence(seed)`` (the search does not replay the weak-label sample, the random
baseline does not replay the search...), and no stage touches the global RNGs.

Network size: the stand-alone networks that are trained (and scored by proxies) are built with
``space.build(arch, num_classes, **network_kwargs(space_cfg, supernet_cfg))``: the supernet
config's ``network_kwargs()`` when it has one (its paths then match the stand-alone networks),
else the space config's, else the space's own defaults.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasrank.errors import ConfigError, NasrankError

__all__ = [
    "Seeds", "StageContext", "SupernetResult", "WeakLabelResult", "PretrainResult",
    "supernet_for", "check_supernet_space", "network_kwargs", "parse_shard", "load_data",
    "proxy_batch", "train_supernet_stage", "load_supernet_stage", "weak_label_stage",
    "proxy_stage", "pretrain_stage", "run_pool_size", "method_for_run",
]


#: images in the one batch zero-cost proxies see (weak labels and ``nasrank proxies`` alike)
PROXY_BATCH = 128


# ----------------------------------------------------------------------------- seeds
class Seeds:
    """One independent random stream per named stage, from ``SeedSequence(seed)``.

    ``Seeds(0).int("search") != Seeds(0).int("weak_labels")``; the same (seed, name) always
    gives the same stream. The name is hashed into the sequence's spawn key (CRC32), so adding
    a stage never shifts the streams of the others.
    """

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)

    def sequence(self, name: str) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.seed, spawn_key=(zlib.crc32(name.encode()),))

    def rng(self, name: str) -> np.random.Generator:
        """A numpy Generator of stage ``name``."""
        return np.random.default_rng(self.sequence(name))

    def int(self, name: str) -> int:
        """A 31-bit integer seed of stage ``name`` (for APIs that take an int seed)."""
        return int(self.sequence(name).generate_state(1)[0] >> 1)


@dataclass(frozen=True)
class StageContext:
    """What every stage of one run shares: output folder, device, seeds, reporting."""

    out: Path
    device: str
    seeds: Seeds
    progress: bool = False


# ----------------------------------------------------------------------------- registry glue
def supernet_for(space_name: str) -> str | None:
    """The registered supernet serving ``space_name``: the entry whose config says
    ``space = "<name>"`` (class attribute), else the entry named like the space; ``None``
    when the space has none (its pipeline then uses proxy/cost weak labels only)."""
    from nasrank.supernet.registry import SUPERNETS

    for name in SUPERNETS.names():
        if getattr(SUPERNETS.get(name), "space", None) == space_name:
            return name
    return space_name if space_name in SUPERNETS else None


def check_supernet_space(space_cfg: Any, supernet_cfg: Any) -> None:
    """Refuse a supernet that serves another space (named in the error)."""
    if supernet_cfg is None:
        return
    serves = getattr(type(supernet_cfg), "space", None)
    if not isinstance(serves, str):
        serves = supernet_cfg.name
    if serves != space_cfg.name:
        raise ConfigError(f"supernet {supernet_cfg.name!r} serves space {serves!r}, not "
                          f"{space_cfg.name!r}; choose --supernet "
                          f"{supernet_for(space_cfg.name) or 'none'}")


def network_kwargs(space_cfg: Any, supernet_cfg: Any = None) -> dict[str, Any]:
    """Keyword arguments of ``space.build`` for stand-alone networks (module docstring)."""
    for cfg in (supernet_cfg, space_cfg):
        fn = getattr(cfg, "network_kwargs", None)
        if fn is not None:
            return dict(fn())
    return {}


def parse_shard(text: str | tuple[int, int]) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``: :func:`nasrank.supernet.scoring.parse_shard`,
    the one shard parser (the library's sharded writers use it too)."""
    from nasrank.supernet.scoring import parse_shard as parse

    return parse(text)


#: ``nasrank run`` searches a finite space of at most this many cells whole (NB201: 15,625
#: cells, 9,445 distinct functions) ...
RUN_WHOLE_SPACE_MAX = 20_000
#: ... and any other space through this many seeded random candidates: ranking a pool costs one
#: predictor pass per candidate and round (on 2 CPU cores ~1-5 ms per arch: NB101's graph keys,
#: the CVPR 2021 ResNet's 20-node graphs), and sampling NB101 cells costs ~2 ms each, so a
#: method's own 100,000 would spend minutes per round on the CPU where 2,000 take seconds
RUN_POOL_SAMPLES = 2_000


def run_pool_size(space: Any, space_cfg: Any = None) -> int:
    """The candidate pool of ``nasrank run``'s search on ``space``: the space config's own
    ``run_pool_size`` (class attribute) when it declares one, else the whole space when it is
    finite and small (:data:`RUN_WHOLE_SPACE_MAX`), else :data:`RUN_POOL_SAMPLES`."""
    own = getattr(type(space_cfg), "run_pool_size", None)
    if isinstance(own, int) and own >= 1:
        return own
    size = getattr(space, "size", None)
    if size is not None and size <= RUN_WHOLE_SPACE_MAX:
        return int(size)
    return RUN_POOL_SAMPLES


def method_for_run(method_cfg: Any, space: Any, space_cfg: Any = None) -> Any:
    """``method_cfg`` with the run's pool: a ``pool_size`` field left at the method's own
    default (sized for benchmark lookups, 100,000) becomes :func:`run_pool_size`; a value the
    user gave (``--method.pool-size N``) is kept. Methods without a pool are returned as is."""
    import dataclasses

    field = {f.name: f for f in dataclasses.fields(method_cfg)}.get("pool_size")
    if field is None or method_cfg.pool_size != field.default:
        return method_cfg
    return dataclasses.replace(method_cfg, pool_size=run_pool_size(space, space_cfg))


# ----------------------------------------------------------------------------- stages
def load_data(dataset: str, data_root: str | None, *, seed: int, image_size: int | None,
              valid_fraction: float = 0.2) -> Any:
    """The dataset as 3-channel images (what every builder takes), split by ``seed``. A 20%
    validation split: on digits 10% would be only ~140 images, too coarse to rank."""
    from nasrank.supernet.datasets import load_dataset

    return load_dataset(dataset, data_root, seed=seed, image_size=image_size, channels=3,
                        valid_fraction=valid_fraction)


def proxy_batch(data: Any, seed: int, batch_size: int) -> tuple[Any, Any]:
    """The one batch zero-cost proxies see (both ``nasrank proxies`` and weak labels)."""
    from nasrank.supernet.train import epoch_order, get_batch

    idx = epoch_order(len(data.train), seed, 0)[:batch_size]
    return get_batch(data.train, idx, "cpu")


@dataclass
class SupernetResult:
    """A trained (or reloaded) supernet; ``stats`` is None when it was only reloaded."""

    supernet: Any
    checkpoint: Path
    stats: Any = None


def _build_supernet(space: Any, supernet_cfg: Any, data: Any, seeds: Seeds) -> Any:
    return supernet_cfg.build(space, num_classes=data.num_classes,
                              in_channels=data.input_shape[0], seed=seeds.int("supernet_init"))


def train_supernet_stage(cfg: Any, space: Any, data: Any, ctx: StageContext) -> SupernetResult:
    """Train (or resume, or reload when finished) ``cfg.supernet`` under ``out/supernet``.
    ``cfg`` has ``supernet``, ``sampler``, ``strategy`` configs and ``epochs``,
    ``batch_size``, ``lr``."""
    from nasrank.supernet.trainer import train_supernet

    net = _build_supernet(space, cfg.supernet, data, ctx.seeds)
    folder = ctx.out / "supernet"
    stats = train_supernet(net, data, cfg.sampler.build(net), epochs=cfg.epochs,
                           batch_size=cfg.batch_size, lr=cfg.lr, device=ctx.device,
                           seed=ctx.seeds.int("supernet_train"), checkpoint_dir=folder,
                           strategy=cfg.strategy.build(net), progress=ctx.progress,
                           same_batch=bool(getattr(cfg, "same_batch", True)))
    return SupernetResult(net, folder, stats)


def load_supernet_stage(space: Any, supernet_cfg: Any, data: Any, folder: Path,
                        seeds: Seeds) -> SupernetResult:
    """The supernet trained into ``folder`` (its checkpoint is checked against the config)."""
    from nasrank.supernet.trainer import load_supernet

    net = _build_supernet(space, supernet_cfg, data, seeds)
    load_supernet(net, folder)
    return SupernetResult(net, folder)


@dataclass
class WeakLabelResult:
    """The weak-label table, where it lives, and the architecture of every key (keys need not
    parse back: NB101's are hashes)."""

    table: Any
    path: Path
    archs: dict[str, Any]


#: ``--all-archs`` enumerates spaces up to this size (NB201: 15,625; MBConv's default: ~1e9)
MAX_ENUMERATED = 1_000_000


def every_arch(space: Any) -> list[Any]:
    """Every architecture of an enumerable ``space`` (isomorphic ones are labelled once
    downstream, by canonical key): labelling a whole small space is cheap next to training
    (NB201's 9,445 canonical cells: 14 min on 2 CPU cores, BENCHMARKS.md issue 15)."""
    size = getattr(space, "size", None)
    if size is None or size > MAX_ENUMERATED:
        raise ConfigError(
            f"--all-archs: space {space.name!r} has "
            f"{'an unknown number of' if size is None else f'{size:,}'} architectures; at most "
            f"{MAX_ENUMERATED:,} are enumerated (use --num-archs for a random sample)")
    return list(space.enumerate())


def weak_label_stage(cfg: Any, space: Any, data: Any, supernet: SupernetResult | None,
                     ctx: StageContext, *, shard: tuple[int, int] = (0, 1),
                     net_kwargs: dict[str, Any] | None = None,
                     stem: str = "weak_labels") -> WeakLabelResult:
    """Weak labels of ``cfg.num_archs`` distinct random architectures (every one of the space
    when ``cfg.all_archs``): supernet accuracy/loss plus cost when there is a supernet,
    zero-cost proxies ``cfg.proxies`` (and cost) without. ``cfg`` has ``num_archs`` and
    ``proxies`` (``all_archs`` optional). Rows (and ``archs``) are the canonical
    representatives of the keys. The table is ``out/<stem>.csv`` (``<stem>-<i>of<n>.csv`` for a
    shard)."""
    from nasrank.spaces import sample_unique
    from nasrank.supernet.scoring import canonical_arch

    if getattr(cfg, "all_archs", False):
        archs = every_arch(space)
    else:
        archs = sample_unique(space, cfg.num_archs, ctx.seeds.rng("weak_label_archs"))
    by_key: dict[str, Any] = {}
    for a in archs:
        a = canonical_arch(space, a)
        by_key.setdefault(space.key(a), a)
    # each shard its own file: shard jobs run side by side (one lock per shard, nasrank.locking)
    path = ctx.out / (f"{stem}.csv" if tuple(shard) == (0, 1)
                      else f"{stem}-{shard[0]}of{shard[1]}.csv")
    if supernet is None:
        table = proxy_stage(space, archs, data, list(cfg.proxies), path, ctx,
                            batch_size=PROXY_BATCH, shard=shard,
                            net_kwargs=net_kwargs or {}, with_cost=True)
        return WeakLabelResult(table, path, by_key)
    from nasrank.supernet.weak_labels import generate_weak_labels

    table = generate_weak_labels(supernet.supernet, archs, data, path, device=ctx.device,
                                 seed=ctx.seeds.int("proxies"), proxies=list(cfg.proxies) or None,
                                 shard=shard, progress=ctx.progress, batch_size=PROXY_BATCH)
    return WeakLabelResult(table, path, by_key)


def proxy_stage(space: Any, archs: list[Any], data: Any, proxies: list[str], path: Path,
                ctx: StageContext, *, batch_size: int, shard: tuple[int, int] = (0, 1),
                net_kwargs: dict[str, Any] | None = None, with_cost: bool = False) -> Any:
    """Zero-cost proxies of ``archs`` (each network initialised by
    :func:`~nasrank.supernet.scoring.proxy_network` from the ``proxies`` stream and its key, on
    one batch of the ``proxies`` stream, exactly as the proxies of weak labels) into the label
    table at ``path``; ``with_cost`` adds ``flops``/``params`` (the weak labels of a space
    without supernet)."""
    from nasrank.proxy_names import PROXY_ALIASES, canonical_proxy
    from nasrank.supernet.proxies import available_proxies
    from nasrank.supernet.scoring import score_space

    unknown = [p for p in proxies if canonical_proxy(p) not in available_proxies()]
    if unknown:
        raise ConfigError(f"unknown proxy {unknown[0]!r}; expected one of {available_proxies()} "
                          f"(aliases: {PROXY_ALIASES})")
    names = list(dict.fromkeys(canonical_proxy(p) for p in proxies))
    if with_cost:
        names += [c for c in ("flops", "params") if c not in names]
    if not names:
        raise ConfigError(f"no proxies given; choose from {available_proxies()}")
    seed = ctx.seeds.int("proxies")
    batch = proxy_batch(data, seed, batch_size)
    return score_space(space, archs, batch, names, path, device=ctx.device, seed=seed,
                       shard=shard, num_classes=data.num_classes, input_shape=data.input_shape,
                       build_kwargs=net_kwargs or {}, progress=ctx.progress)


@dataclass
class PretrainResult:
    """The pretrained predictor and its checkpoint (``reused``: loaded, not trained)."""

    model: Any
    checkpoint: Path
    reused: bool = False


def usable_columns(table: Any) -> list[str]:
    """Columns a predictor can learn from: finite everywhere and not constant."""
    return [n for n in table.names
            if np.isfinite(table.column(n)).all() and np.ptp(table.column(n)) > 0]


def pretrain_stage(cfg: Any, space: Any, table: Any, ctx: StageContext, *,
                   columns: list[str] | None = None,
                   archs: dict[str, Any] | None = None) -> PretrainResult:
    """Pretrain the predictor on the weak labels (``cfg.pretrain_epochs``), or load it when
    ``out/predictor.pt`` exists. ``archs``: the architecture of each key (default: the table's
    ``arch`` column, or the keys parsed for tables without it)."""
    from nasrank.predictor import RankingPredictor

    ckpt = ctx.out / "predictor.pt"
    if ckpt.exists():
        return PretrainResult(RankingPredictor.load(ckpt, space=space, device=ctx.device), ckpt,
                              reused=True)
    cols = list(columns) if columns else usable_columns(table)
    if not cols:
        raise NasrankError(f"no usable weak-label column in {table.names} (all constant or NaN)")
    rows = [archs[k] for k in table.keys] if archs else table_archs(space, table)
    model = RankingPredictor(space, device=ctx.device, seed=ctx.seeds.int("pretrain"),
                             hybrid=bool(getattr(cfg, "hybrid", False)),
                             encoder=getattr(cfg, "encoder", "dgcnn"))
    model.pretrain(rows, table, columns=cols, epochs=cfg.pretrain_epochs,
                   compile=getattr(cfg, "pretrain_compile", False),
                   rank_weight=getattr(cfg, "pretrain_rank_weight", 0.0), progress=ctx.progress)
    model.save(ckpt)
    return PretrainResult(model, ckpt)


def table_archs(space: Any, table: Any) -> list[Any]:
    """The architectures of a label table's rows: its ``arch`` column parsed, or the keys for
    tables written before the column existed (NB101's hash keys cannot be read that way)."""
    return table.architectures(space)


class ArchBook:
    """``key -> architecture`` of everything an oracle trained, kept in a JSONL file next to
    the search records (which store keys only), so that a report can rebuild the architectures
    of any space, resumed runs included."""

    def __init__(self, path: Path, space: Any) -> None:
        import json

        self.path, self.space = Path(path), space
        self.archs: dict[str, Any] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    k, text = json.loads(line)
                except (ValueError, TypeError):
                    continue  # a torn last line of a killed run
                self.archs.setdefault(k, space.parse(text))

    def add(self, arch: Any) -> None:
        import json

        k = self.space.key(arch)
        if k not in self.archs:
            self.archs[k] = arch
            with open(self.path, "a") as f:
                f.write(json.dumps([k, self.space.format(arch)]) + "\n")


class BookedOracle:
    """An oracle that writes each evaluated architecture into an :class:`ArchBook` first."""

    def __init__(self, oracle: Any, book: ArchBook) -> None:
        self.oracle, self.book, self.space = oracle, book, oracle.space

    def evaluate(self, arch: Any) -> Any:
        self.book.add(arch)
        return self.oracle.evaluate(arch)

    def describe(self) -> dict[str, Any]:
        return self.oracle.describe()
