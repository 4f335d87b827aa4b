"""The :class:`PredictorSampler` of :mod:`nasrank.search.optuna_search` (documented there), in its
own private module because it subclasses Optuna's ``BaseSampler`` and so imports Optuna at its
top: the registry loader skips ``_`` modules, so ``nasrank search --help`` does not pay for Optuna.
Import it as ``nasrank.search.optuna_search.PredictorSampler``."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nasrank.errors import NasrankError
from nasrank.spaces.base import Arch, SearchSpace

from .baselines import check_seed
from .evolution import _positive
from .surrogates import SurrogateFactory, candidate_pool, make_surrogate


def space_distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    """The space's choices as Optuna categorical distributions."""
    return {name: CategoricalDistribution(list(opts)) for name, opts in space.choices().items()}


class PredictorSampler(BaseSampler):
    """Propose the untried architecture a surrogate ranks best (see module docstring).

    - The first ``n_startup_trials`` trials (counted in completed trials) are random untried
      archs.
    - After that, the surrogate (``predictor_factory(seed)``) is fitted on the completed trials
      with finite values (objective negated for ``minimize`` studies, so higher is better), at
      most once per ``fit_every`` new completed trials, and the best-scored untried candidate is
      proposed. Candidates: :func:`~search.surrogates.candidate_pool` (the whole space,
      deduplicated by canonical key, when finite). ``predictor_factory=None`` keeps proposing
      random untried archs (a dedup-aware random search).
    - "Tried" means any other trial of the study (any state) whose parameters give that
      canonical key.

    Every choice is a function of (seed, trial number, completed trials): the same seed gives
    the same trials, and a study resumed from storage continues exactly as it would have.
    """

    def __init__(self, space: SearchSpace, predictor_factory: SurrogateFactory | None = None, *,
                 seed: int | None = None, n_startup_trials: int = 10, fit_every: int = 1,
                 pool_size: int = 100_000, fit_kwargs: Mapping[str, Any] | None = None) -> None:
        if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) \
                or n_startup_trials < 1:
            raise NasrankError(f"n_startup_trials must be a positive int, got {n_startup_trials!r}")
        _positive("fit_every", fit_every)
        self.space = space
        self.predictor_factory = predictor_factory
        self._seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None \
            else check_seed(seed)
        self.n_startup_trials = n_startup_trials
        self.fit_every = fit_every
        self.pool_size = pool_size
        self.fit_kwargs = dict(fit_kwargs or {})
        self._dists = space_distributions(space)
        self._pool: list[Arch] | None = None
        self._pool_keys: list[str] = []
        self._cache: tuple[tuple[int, ...], np.ndarray] | None = None
        self._surrogate: Any = None
        self.n_fits = 0

    # -- Optuna sampler API
    def reseed_rng(self) -> None:
        self._seed = int(np.random.SeedSequence().entropy % 2**31)
        self._surrogate, self._cache, self._pool = None, None, None

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        _single_objective(study)
        return dict(self._dists)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        arch = self._propose(study, trial)
        params = self.space.to_choices(arch)
        return {n: params[n] for n in search_space}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        # a fresh RandomSampler per (seed, trial, name): resumable and order-independent
        sub_seed = int(np.random.default_rng(
            [self._seed, trial.number, zlib.crc32(param_name.encode())]).integers(2**31))
        return RandomSampler(seed=sub_seed).sample_independent(
            study, trial, param_name, param_distribution)

    # -- internals
    def _arch_of(self, params: Mapping[str, Any]) -> Arch | None:
        if not all(n in params for n in self._dists):
            return None
        return self.space.from_choices(dict(params))

    def _ensure_pool(self) -> None:
        if self._pool is None:
            self._pool = candidate_pool(self.space, np.random.default_rng([self._seed, 1]),
                                        self.pool_size)
            self._pool_keys = [self.space.key(a) for a in self._pool]

    def _propose(self, study: Study, trial: FrozenTrial) -> Arch:
        _single_objective(study)
        all_trials = study.get_trials(deepcopy=False)
        tried = set()
        for t in all_trials:
            if t.number != trial.number:
                a = self._arch_of(t.params)
                if a is not None:
                    tried.add(self.space.key(a))
        complete = [t for t in all_trials if t.state == TrialState.COMPLETE
                    and t.value is not None and np.isfinite(t.value)
                    and self._arch_of(t.params) is not None]
        complete.sort(key=lambda t: t.number)
        self._ensure_pool()
        untried = [j for j, k in enumerate(self._pool_keys) if k not in tried]
        if not untried:
            raise NasrankError(
                f"every one of the {len(self._pool_keys)} candidate archs of space "
                f"{self.space.name!r} has been tried")
        if self.predictor_factory is None or len(complete) < self.n_startup_trials:
            rng = np.random.default_rng([self._seed, trial.number])
            return self._pool[untried[int(rng.integers(len(untried)))]]
        # fit on a prefix whose length only depends on the count: resumable, cacheable
        n_fit = self.n_startup_trials + (len(complete) - self.n_startup_trials) \
            // self.fit_every * self.fit_every
        used = complete[:n_fit]
        numbers = tuple(t.number for t in used)
        if self._cache is None or self._cache[0] != numbers:
            sign = -1.0 if study.direction == StudyDirection.MINIMIZE else 1.0
            if self._surrogate is None:  # one instance: every fit restarts it (protocol)
                self._surrogate = make_surrogate(self.predictor_factory, self._seed)
            surrogate = self._surrogate
            surrogate.fit([self._arch_of(t.params) for t in used],
                          np.array([sign * t.value for t in used]), **self.fit_kwargs)
            self._cache = (numbers, np.asarray(surrogate.predict(self._pool), dtype=np.float64))
            self.n_fits += 1
        scores = self._cache[1]
        best = max(untried, key=lambda j: (scores[j], -j))
        return self._pool[best]


def _single_objective(study: Study) -> None:
    if len(study.directions) != 1:
        raise NasrankError(
            f"PredictorSampler ranks architectures by one objective, but study "
            f"{study.study_name!r} has {len(study.directions)} "
            f"({', '.join(d.name.lower() for d in study.directions)}); multi-objective search is "
            "not supported yet: use one objective, or an Optuna multi-objective sampler "
            "(NSGAIISampler) without the predictor")


__all__ = ["PredictorSampler", "space_distributions"]
