"""Surrogates (performance predictors) as the search loops see them.

A search only needs ``fit(archs, y)`` (higher ``y`` = better; every call restarts from the
surrogate's initial state) and ``predict(archs) -> np.ndarray`` (higher = better). Searches take a
*factory* ``seed -> surrogate`` so each run builds its own, seeded surrogate.

- :class:`ForestSurrogate`: a random forest on the one-hot encoding of the space's categorical
  choices (scikit-learn). Cheap and a solid baseline (NB201, 100 labels:
  Kendall tau 0.755 against cifar10_valid, BENCHMARKS.md issue 3).
- :func:`ranking_predictor_factory`: the project's graph :class:`predictor.RankingPredictor`,
  from scratch or restarted from a pretrained checkpoint at every fit.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from nasrank.spaces.base import Arch, SearchSpace
from nasrank.errors import NasrankError


@runtime_checkable
class Surrogate(Protocol):
    def fit(self, archs: Sequence[Arch], y: Any, **kwargs: Any) -> Any: ...
    def predict(self, archs: Sequence[Arch]) -> np.ndarray: ...


SurrogateFactory = Callable[[int], Surrogate]


def describe_factory(factory: SurrogateFactory | None) -> Any:
    """A JSON-able description of a surrogate factory for run configs (its ``config`` attribute
    when it has one, else its qualified name)."""
    if factory is None:
        return None
    cfg = getattr(factory, "config", None)
    if isinstance(cfg, Mapping):
        return dict(cfg)
    return getattr(factory, "__qualname__", type(factory).__qualname__)


def _file_identity(path: str | os.PathLike) -> str:
    """``<file name>@sha256:<digest>``: the same for one file wherever it lies."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{os.path.basename(os.fspath(path))}@sha256:{h.hexdigest()}"


def make_surrogate(factory: SurrogateFactory, seed: int) -> Surrogate:
    if not callable(factory):
        raise NasrankError(f"predictor_factory must be callable seed -> surrogate, got {factory!r}")
    s = factory(seed)
    if not isinstance(s, Surrogate):
        raise NasrankError(
            f"predictor_factory returned {type(s).__name__}, which lacks fit(archs, y) / "
            f"predict(archs)")
    return s


def check_labels(space: SearchSpace, archs: Sequence[Arch], y: Any, who: str) -> np.ndarray:
    """``y`` as float64, one finite value per arch; else a :class:`NasrankError` naming the
    first arch whose label is NaN or infinite (a NaN silently poisons a forest or a ranking)."""
    y = np.asarray(y, dtype=np.float64)
    if len(archs) == 0 or y.shape != (len(archs),):
        raise NasrankError(f"{who} needs one y per arch; got {len(archs)} archs, y {y.shape}")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        i = int(bad[0])
        try:
            name = space.format(archs[i])
        except Exception:  # a space without format, or a malformed arch: show it as given
            name = repr(archs[i])
        raise NasrankError(
            f"{who}: label of architecture {name!r} is {y[i]} ({bad.size} of {len(y)} labels are "
            f"not finite); expected finite labels (drop or fix those rows)")
    return y


class OneHotEncoder:
    """One-hot encoding of the space's categorical choices (``space.to_choices``)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.choices = space.choices()
        self.index = {name: {repr(v): j for j, v in enumerate(opts)}
                      for name, opts in self.choices.items()}
        self.width = sum(len(o) for o in self.choices.values())

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        x = np.zeros((len(archs), self.width), dtype=np.float32)
        for i, arch in enumerate(archs):
            params = self.space.to_choices(arch)
            offset = 0
            for name, opts in self.choices.items():
                x[i, offset + self.index[name][repr(params[name])]] = 1.0
                offset += len(opts)
        return x


class ForestSurrogate:
    """Random-forest regressor on one-hot choices; archs are canonicalised first (when the
    space offers ``canonical``) so equivalent cells share features."""

    def __init__(self, space: SearchSpace, *, seed: int = 0, n_estimators: int = 100,
                 min_samples_leaf: int = 1,
                 feature_cache: dict[Arch, np.ndarray] | None = None) -> None:
        self.space = space
        self.encode = OneHotEncoder(space)
        self.seed = seed
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.model = None
        self._rows: dict[Arch, np.ndarray] = {} if feature_cache is None else feature_cache

    def _x(self, archs: Sequence[Arch]) -> np.ndarray:
        # rows cached per arch value: searches score the same candidate pool again and again
        canon = getattr(self.space, "canonical", None)
        missing = [a for a in dict.fromkeys(archs) if a not in self._rows]
        if missing:
            enc = self.encode([canon(a) for a in missing] if canon else missing)
            self._rows.update(zip(missing, enc))
        return np.stack([self._rows[a] for a in archs])

    def fit(self, archs: Sequence[Arch], y: Any, **_: Any) -> ForestSurrogate:
        from sklearn.ensemble import RandomForestRegressor

        y = check_labels(self.space, archs, y, "ForestSurrogate.fit")
        self.model = RandomForestRegressor(
            n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
            random_state=self.seed, n_jobs=1).fit(self._x(archs), y)
        return self

    def predict(self, archs: Sequence[Arch]) -> np.ndarray:
        if self.model is None:
            raise NasrankError("ForestSurrogate.predict called before fit")
        return self.model.predict(self._x(archs))


def forest_factory(space: SearchSpace, **kwargs: Any) -> SurrogateFactory:
    """``seed -> ForestSurrogate(space, seed=seed, **kwargs)``, with a ``config`` for records."""

    rows: dict[Arch, np.ndarray] = {}  # one-hot rows shared by every surrogate made here

    def factory(seed: int) -> ForestSurrogate:
        return ForestSurrogate(space, seed=seed, feature_cache=rows, **kwargs)

    factory.config = {"surrogate": "random_forest", **kwargs}  # type: ignore[attr-defined]
    return factory


class _KeyMemoSpace:
    """A space whose ``key`` is memoised per (hashable) arch; everything else is delegated."""

    def __init__(self, space: SearchSpace) -> None:
        self._space = space
        self._keys: dict[Any, str] = {}

    def key(self, arch: Arch) -> str:
        try:
            return self._keys[arch]
        except KeyError:
            k = self._keys[arch] = self._space.key(arch)
            return k
        except TypeError:  # unhashable arch: no memo
            return self._space.key(arch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._space, name)


def ranking_predictor_factory(
    space: SearchSpace, *,
    checkpoint: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    device: str = "cpu", predictor_kwargs: Mapping[str, Any] | None = None,
    fit_kwargs: Mapping[str, Any] | None = None, prior_label: str | None = None,
) -> SurrogateFactory:
    """``seed -> RankingPredictor`` adapter: from ``checkpoint`` (pretrained on weak labels; every
    ``fit`` restarts from it) or a fresh seeded one built with ``predictor_kwargs``. Several
    checkpoints (e.g. one per pretraining seed) make a ``PretrainingEnsemble``: each is
    fine-tuned and their standardised scores averaged. ``fit_kwargs`` (loss, epochs, lr...) are
    passed to every ``fit``. ``prior_label``: before the first ``fit``, score archs by the
    pretrained head's prediction of that weak label (e.g. a low-fidelity accuracy), so that a
    first round can be chosen by the predictor before any real label (one checkpoint only)."""
    from nasrank.predictor import RankingPredictor  # imported here: search works without the predictor

    paths = None
    if checkpoint is not None:
        paths = ([checkpoint] if isinstance(checkpoint, (str, os.PathLike))
                 else list(checkpoint))
        if not paths:
            raise NasrankError("checkpoint is an empty list; pass a path, several, or None")
        # read once up front: a missing, foreign or crafted checkpoint is refused before the
        # search starts (and writes its record), not at the first fit
        names = [RankingPredictor.load(p, space=space).label_names for p in paths]
    if prior_label is not None:
        if checkpoint is None:
            raise NasrankError(f"prior_label={prior_label!r} needs a pretrained checkpoint")
        if len(paths) > 1:
            raise NasrankError(f"prior_label={prior_label!r} reads one pretrained head; got "
                               f"{len(paths)} checkpoints")
        if prior_label not in names[0]:
            raise NasrankError(f"prior_label {prior_label!r} is not a label of checkpoint "
                               f"{os.fspath(paths[0])!r}; its labels are {names[0]}")

    fit_kw = dict(fit_kwargs or {})
    pred_kw = dict(predictor_kwargs or {})
    # Searches score the same candidate pool every round and every run: one graph cache (with
    # memoised canonical keys) shared by all predictors this factory makes saves rebuilding
    # thousands of graphs per run. Graphs depend only on the space, so sharing is safe.
    shared: dict[str, Any] = {}

    class _Adapter:
        def __init__(self, seed: int) -> None:
            if paths is not None:
                members = [RankingPredictor.load(p, space=space, device=device) for p in paths]
            else:
                members = [RankingPredictor(space, device=device, seed=seed, **pred_kw)]
            for m in members:
                if hasattr(m, "_graphs"):
                    from nasrank.predictor.graphs import GraphCache

                    if "graphs" not in shared:
                        shared["graphs"] = GraphCache(_KeyMemoSpace(space))
                    m._graphs = shared["graphs"]
            if len(members) > 1:
                from nasrank.predictor import PretrainingEnsemble

                self.model = PretrainingEnsemble(members)
            else:
                self.model = members[0]
            self.fitted = False

        def fit(self, archs: Sequence[Arch], y: Any, **kw: Any) -> Any:
            y = check_labels(space, archs, y, "ranking predictor fit")
            self.fitted = True
            return self.model.fit(list(archs), y, **{**fit_kw, **kw})

        def predict(self, archs: Sequence[Arch]) -> np.ndarray:
            if prior_label is not None and not self.fitted:
                return np.asarray(self.model.predict_labels(list(archs))[prior_label],
                                  dtype=np.float64)
            return np.asarray(self.model.predict(list(archs)), dtype=np.float64)

    def factory(seed: int) -> _Adapter:
        return _Adapter(seed)

    factory.config = {"surrogate": "ranking_predictor",  # type: ignore[attr-defined]
                      # by content, not path: a resume must not depend on how --out is
                      # spelled or where the folder was moved
                      "checkpoint": (None if paths is None else _file_identity(paths[0])
                                     if len(paths) == 1 else [_file_identity(p) for p in paths]),
                      "predictor_kwargs": {k: repr(v) for k, v in sorted(pred_kw.items())},
                      "fit_kwargs": {k: repr(v) for k, v in sorted(fit_kw.items())}}
    if prior_label is not None:
        factory.config["prior_label"] = prior_label  # type: ignore[attr-defined]
    return factory


def candidate_pool(space: SearchSpace, rng: np.random.Generator, pool_size: int) -> list[Arch]:
    """Architectures a surrogate scores: the whole space (one arch per canonical key) when it is
    finite and not larger than ``pool_size``, else ``pool_size`` seeded samples with distinct
    keys."""
    from nasrank.spaces.base import sample_unique

    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise NasrankError(f"pool_size must be a positive int, got {pool_size!r}")
    if space.size is not None and space.size <= pool_size:
        try:
            return list(_WHOLE_SPACE[space])
        except (KeyError, TypeError):
            pass
        seen: set[str] = set()
        out = []
        for arch in space.enumerate():
            k = space.key(arch)
            if k not in seen:
                seen.add(k)
                out.append(arch)
        try:  # remembered per space object: benchmarks run thousands of searches on one space
            _WHOLE_SPACE[space] = tuple(out)
        except TypeError:
            pass
        return out
    return sample_unique(space, pool_size, rng)


_WHOLE_SPACE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
