"""Everything that runs a CNN: datasets, stand-alone training, weight-sharing supernets and their
training strategies, zero-cost proxies, weak-label generation (see docs/architecture.md).

The public names below are imported lazily, on first access (PEP 562): ``import
nasrank.supernet`` and its light registry module (``nasrank.supernet.registry``, read by
``nasrank --help``) import no torch; ``from nasrank.supernet import train_supernet`` does.
"""

from __future__ import annotations

from nasrank.lazy import lazy_exports

#: public name -> the submodule defining it
_EXPORTS: dict[str, str] = {
    # supernets, samplers, step strategies
    "Supernet": "base", "ArchSampler": "base", "UniformSampler": "base",
    "StrictFairSampler": "base", "StepStrategy": "base", "unwrap": "base",
    "NB201Supernet": "nb201_supernet", "ChannelSupernet": "channel",
    "MBConvSupernet": "mbconv_supernet",
    "RunningTeacherStrategy": "distill", "FixedTeacherStrategy": "distill",
    "TrainingPreset": "distill", "get_preset": "distill", "kd_loss": "distill",
    "EnsembleKDStrategy": "ennas", "DiversitySampler": "ennas",
    "MarginPairSampler": "rdnas", "RankingDistillStrategy": "rdnas",
    "FewShotSupernet": "fewshot", "train_fewshot": "fewshot",
    "fewshot_weak_labels": "fewshot",
    # training
    "train_supernet": "trainer", "load_supernet": "trainer", "SupernetTrainStats": "trainer",
    "train_standalone": "train", "evaluate": "train", "TrainResult": "train",
    # data
    "load_dataset": "datasets", "DatasetSplits": "datasets", "DATASET_NAMES": "datasets",
    # weak labels and zero-cost proxies
    "generate_weak_labels": "weak_labels", "recalibrate_bn": "weak_labels",
    "score": "proxies", "score_with_notes": "proxies", "available_proxies": "proxies",
    "ProxySettings": "proxies", "score_space": "scoring", "read_shards": "scoring",
    "proxy_network": "scoring", "parse_shard": "scoring",
    # registries
    "SUPERNETS": "registry", "SAMPLERS": "registry", "STEP_STRATEGIES": "registry",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
