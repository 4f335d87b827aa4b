"""``RankingPredictor``: the sklearn-like face of the predictor (AceNAS recipe).

``pretrain`` fits the DGCNN encoder and multi-task heads to cheap weak labels (z-normalised,
multi-task MSE); ``fit`` fine-tunes encoder + ranking head on a few real labels with a ranking
loss, always starting again from the pretrained (or freshly seeded) weights; ``predict`` scores
architectures, higher = better. Architectures with the same canonical key get the same score.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nasrank.spaces.base import SearchSpace
from nasrank.errors import LabelTableError, NasrankError, SpaceMismatchError
from nasrank.spaces.labels import LabelTable

from .encoder import ENCODERS, PredictorNet, SeededDropout
from .dense import DENSE_MAX_NODES, DenseGraphBatch
from .graphs import GraphBatch, GraphCache
from .optim import FlatAdam
from .losses import (LAMBDARANK_GAINS, LOSS_NAMES, acenas_relevance, check_mu, get_loss,
                     mse_loss, ranknet_per_list)
from .metrics import kendall_tau
from .registry import COMPILE_MODES

CHECKPOINT_FORMAT = "nasrank-predictor-v1"

# Learning rate for fine-tuning a *pretrained* predictor. ``fit`` starts it from the ridge
# read-out of the pretrained head; larger steps undo that read-out (NB201, N = 100, BENCHMARKS.md:
# LambdaRank at 3e-5 keeps Kendall tau >= 0.80, at 1e-3 it fell to ~0.71-0.74).
PRETRAINED_FINETUNE_LR = 3e-5
#: What ``fit``'s early stopping keeps: lowest validation loss, or highest validation Kendall tau.
FIT_SELECT = ("loss", "kendall")


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise NasrankError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _check_nonneg_float(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise NasrankError(f"{name} must be a number >= 0, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise NasrankError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _check_compile(value: Any) -> str | None:
    """``pretrain``'s ``compile`` argument -> a ``torch.compile`` mode, or None for eager."""
    if value is False or value is None:
        return None
    if value is True:
        return "default"
    if isinstance(value, str) and value in COMPILE_MODES:
        return value
    raise NasrankError(f"compile must be True, False or one of {COMPILE_MODES}, got {value!r}")


def _draws_dropout(net: torch.nn.Module) -> bool:
    """Whether a training forward pass of ``net`` draws dropout masks (which a whole-step
    ``torch.compile`` graph cannot: seeded masks come from a ``torch.Generator``)."""
    return any(isinstance(m, (torch.nn.Dropout, SeededDropout)) and m.p > 0 for m in net.modules())


def _adam(params: Any, **kw: Any) -> FlatAdam:
    """The predictor's optimizer: Adam over one flat buffer (see :mod:`predictor.optim`);
    callers ``release()`` it when training ends."""
    return FlatAdam(params, **kw)


#: Training sets whose padded dense inputs take at most this many bytes are collated once per
#: ``pretrain`` / ``fit`` (and kept on the device); each step then takes its rows with three
#: ``index_select`` calls instead of collating and normalising its graphs again.
RESIDENT_BATCH_BYTES = 256 * 2**20


class RankingPredictor:
    """DGCNN ranking predictor for one search space.

    Args:
        space: the search space of every architecture passed in.
        device: where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        seed: seeds the initial weights, the train/validation split and the batch order.
        hidden, num_layers, embedding_dim, head_hidden, dropout: encoder / head sizes.
        head_dropout: dropout after the heads' hidden layer (AceNAS: 0.5, the AceNAS preset
            ``predictor.encoder.ACENAS_PRESET``; 0 = none, also what a checkpoint without the
            key loads as). Seeded: a fit stays reproducible.
        dense: batch layout of the encoder (same weights and outputs either way): padded
            tensors and batched matmuls (fast at small batches), or sparse message passing;
            ``None`` picks dense when ``space.max_nodes <= DENSE_MAX_NODES`` (32).
        encoder: the graph encoder: ``"dgcnn"`` (AceNAS's; the default, also what a
            checkpoint without the key loads as) or ``"gin"`` (sum aggregation, MLP updates,
            sum readout: ``predictor.encoder.GINEncoder``) or ``"transformer"`` (attention over
            in- and out-neighbours, PyG ``TransformerConv``; sparse path only).
        hybrid: the ranking head also reads each architecture's weak-label vector (issue 15):
            the measured one for the archs of the pretraining table (and any added with
            :meth:`add_measured_labels`), else the pretraining heads' prediction of it. Needs
            ``pretrain`` before ``fit``; ``fit`` starts from the ridge read-out of the
            pretrained hidden layer *and* the labels, so measured cheap labels count at
            predict time instead of only shaping the embedding.
    """

    def __init__(
        self, space: SearchSpace, *, device: str | torch.device = "cpu", seed: int = 0,
        hidden: int = 128, num_layers: int = 4, embedding_dim: int = 128,
        head_hidden: int = 128, dropout: float = 0.0, head_dropout: float = 0.0,
        dense: bool | None = None, hybrid: bool = False, encoder: str = "dgcnn",
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise NasrankError(f"seed must be an int, got {seed!r}")
        if encoder not in ENCODERS:
            raise NasrankError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        self.space = space
        self.device = torch.device(device)
        self.seed = int(seed)
        self.hparams_cfg = {
            "hidden": _check_positive_int("hidden", hidden),
            "num_layers": _check_positive_int("num_layers", num_layers),
            "embedding_dim": _check_positive_int("embedding_dim", embedding_dim),
            "head_hidden": _check_positive_int("head_hidden", head_hidden),
            "dropout": _check_nonneg_float("dropout", dropout),
            "head_dropout": _check_nonneg_float("head_dropout", head_dropout),
        }
        if encoder != "dgcnn":  # only when set: DGCNN checkpoints stay as they were
            self.hparams_cfg["encoder"] = encoder
        if not isinstance(hybrid, bool):
            raise NasrankError(f"hybrid must be True or False, got {hybrid!r}")
        self.hybrid = hybrid
        self._measured: dict[str, np.ndarray] = {}  # canonical key -> z-normalised weak labels
        if encoder == "transformer":
            if dense:
                raise NasrankError("encoder='transformer' has no dense path; got dense=True")
            dense = False
        self._graphs = GraphCache(space, dense=dense,
                                  aggregation="sum" if encoder == "gin" else "gcn")
        self.label_names: list[str] = []
        self.label_mean = np.zeros(0)
        self.label_std = np.ones(0)
        self.pretrained = False
        self._compiled_whole_step = False  # set by pretrain(compile=...), for tests
        self.loss_name: str | None = None
        self.y_mean, self.y_std = 0.0, 1.0
        self.net = self._build(num_tasks=0)
        self._clear_members()
        self._init_state = copy.deepcopy(self.net.state_dict())  # seeded fresh weights
        self._start_state = self._init_state  # where fit() starts: pretrained or fresh

    # ------------------------------------------------------------------ internals
    def _clear_members(self) -> None:
        """Forget the extra members of an ensemble ``fit``: ``self.net`` is member 0; members
        1.. are ``_extra_nets``; ``_member_scale[k]`` = (mean, std) of member k's scores on its
        fit set, which puts the members on one scale before they are averaged."""
        self._extra_nets: list[PredictorNet] = []
        self._member_scale: list[tuple[float, float]] = []

    @property
    def ensemble_size(self) -> int:
        """How many fine-tuned members ``predict`` averages (1 without an ensemble fit)."""
        return 1 + len(self._extra_nets)

    def _build(self, num_tasks: int) -> PredictorNet:
        """A network initialised from ``seed`` (torch's global RNG is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = PredictorNet(
                self.space.node_feature_dim, self.space.max_nodes, self.space.hparam_dim,
                num_tasks, **self.hparams_cfg,
                hybrid_labels=num_tasks if self.hybrid else 0,
            )
        return net.to(self.device)

    def _keys(self, archs: Sequence[Any], what: str) -> list[str]:
        if isinstance(archs, (str, bytes)) or not isinstance(archs, Sequence):
            archs = list(archs) if not isinstance(archs, (str, bytes)) else [archs]
        if len(archs) == 0:
            raise NasrankError(f"{what}: got an empty list of architectures; expected at least one")
        return self._graphs.keys(archs)

    def _batch(self, keys: Sequence[str]) -> GraphBatch | DenseGraphBatch:
        return self._graphs.batch(keys).to(self.device)

    def _batcher(self, keys: Sequence[str]) -> Callable[[torch.Tensor, torch.Tensor], GraphBatch | DenseGraphBatch]:
        """``(idx, idx on the device) -> batch of keys[idx]`` for a training loop: dense
        training sets up to :data:`RESIDENT_BATCH_BYTES` are collated once, kept on the device
        and indexed per step (same tensors as collating each step: normalisation is per graph);
        others are collated per step on the host."""
        if self._graphs.dense:
            n, f, h = self.space.max_nodes, self.space.node_feature_dim, self.space.hparam_dim
            if len(keys) * 4 * (2 * n * n + n * f + n + h) <= RESIDENT_BATCH_BYTES:
                full = self._batch(keys)
                return lambda idx, idx_dev: full.take(idx_dev)
        return lambda idx, idx_dev: self._batch([keys[i] for i in idx.tolist()])

    def _trained_parameters(self, head: str) -> list[torch.nn.Parameter]:
        """The parameters a ``pretrain`` (``head="aux"``) or ``fit`` (``"rank"``) loss reaches:
        the encoder and that head (a hybrid fit also trains the label inputs)."""
        skip = ("rank_head.", "label_") if head == "aux" else ("aux_head.",)
        return [p for name, p in self.net.named_parameters() if not name.startswith(skip)]

    def _scores(self, gb: GraphBatch | DenseGraphBatch, keys: Sequence[str],
                net: PredictorNet | None = None) -> torch.Tensor:
        net = self.net if net is None else net
        if not net.hybrid_labels:
            return net(*gb.inputs())
        labels, known = self._measured_batch(keys)
        return net.forward_hybrid(*gb.inputs(), labels=labels, known=known)

    def _measured_batch(self, keys: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[len(keys), T]`` z-normalised measured weak labels (zeros where unknown) and the
        ``[len(keys)]`` mask of the keys that have them."""
        t = len(self.label_names)
        rows = [self._measured.get(k) for k in keys]
        known = torch.tensor([r is not None for r in rows], dtype=torch.bool)
        mat = np.stack([r if r is not None else np.zeros(t, dtype=np.float32) for r in rows])
        return (torch.from_numpy(mat).to(self.device), known.to(self.device))

    def as_hybrid(self, archs: Sequence[Any], labels: Mapping[str, Any] | LabelTable) -> RankingPredictor:
        """A hybrid copy of this pretrained predictor (same pretrained weights, e.g. from an older
        checkpoint) whose ranking head also reads the measured weak labels of ``archs``
        (``labels``: every pretraining label, in its own units). ``self`` is left unchanged."""
        if not self.pretrained:
            raise NasrankError("as_hybrid needs a pretrained predictor; call pretrain() first")
        new = copy.deepcopy(self)
        new.hybrid, new._measured = True, {}
        start = new._start_state
        new.net = new._build(num_tasks=len(new.label_names))
        new.net.load_state_dict(start, strict=False)  # the hybrid layers start at zero
        new._start_state = copy.deepcopy(new.net.state_dict())
        new.loss_name = None
        new._clear_members()
        new.add_measured_labels(archs, labels)
        return new

    def add_measured_labels(self, archs: Sequence[Any], labels: Mapping[str, Any]) -> None:
        """Give a hybrid predictor the measured weak labels of more architectures (e.g. the
        zero-cost proxies of new candidates): ``labels`` maps every pretraining label name to one
        value per arch, in the labels' own units. Later ``fit``/``predict`` calls use them in
        place of the predicted labels."""
        if not self.hybrid or not self.pretrained:
            raise NasrankError("add_measured_labels needs a hybrid predictor after pretrain()")
        keys = self._keys(archs, "add_measured_labels")
        missing = [n for n in self.label_names if n not in labels]
        if missing:
            raise LabelTableError(f"measured labels lack {missing}; a hybrid head reads all of "
                                  f"{self.label_names}")
        _, mat = self._label_matrix(archs, keys, labels, self.label_names)
        z = ((mat - self.label_mean) / self.label_std).astype(np.float32)
        for key, row in zip(keys, z):
            self._measured[key] = row

    # ------------------------------------------------------------------ pretraining
    def _label_matrix(
        self, archs: Sequence[Any], keys: list[str], labels: LabelTable | Mapping[str, Any],
        columns: Sequence[str] | None,
    ) -> tuple[list[str], np.ndarray]:
        if isinstance(labels, LabelTable):
            labels.check_space(self.space.name)
            names = list(columns) if columns is not None else labels.names
            if not names:
                raise LabelTableError("label table has no columns to pretrain on")
            cols = [labels.column(n) for n in names]
            rows = []
            for arch, key in zip(archs, keys):
                if key in labels:
                    rows.append(labels.index(key))
                    continue
                text = self.space.format(self._graphs.as_arch(arch))
                if text not in labels:
                    raise LabelTableError(
                        f"architecture {text!r} (key {key!r}) is not in the label table"
                    )
                rows.append(labels.index(text))
            mat = np.stack([c[rows] for c in cols], axis=1)
        elif isinstance(labels, Mapping):
            names = list(columns) if columns is not None else list(labels)
            if not names:
                raise LabelTableError("labels mapping is empty; expected name -> array")
            cols = []
            for n in names:
                if n not in labels:
                    raise LabelTableError(f"unknown label {n!r}; available: {sorted(labels)}")
                c = np.asarray(labels[n], dtype=np.float64).reshape(-1)
                if c.shape[0] != len(keys):
                    raise LabelTableError(
                        f"label {n!r} has {c.shape[0]} values for {len(keys)} architectures; "
                        "expected one per architecture"
                    )
                cols.append(c)
            mat = np.stack(cols, axis=1)
        else:
            raise LabelTableError(
                f"labels must be a LabelTable or a mapping name -> array, got {type(labels).__name__}"
            )
        bad = ~np.isfinite(mat)
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise LabelTableError(
                f"label {names[j]!r} is {mat[i, j]} for architecture {keys[i]!r} "
                f"({int(bad[:, j].sum())} non-finite values in that column); expected finite values"
            )
        return names, mat

    def pretrain(
        self, archs: Sequence[Any], labels: LabelTable | Mapping[str, Any], *,
        columns: Sequence[str] | None = None, weights: Sequence[float] | Mapping[str, float] | None = None,
        epochs: int = 300, batch_size: int = 20, lr: float = 1e-3, weight_decay: float = 1e-5,
        compile: bool | str = False, rank_weight: float = 0.0, progress: bool = False,
    ) -> dict:
        """Multi-task MSE pretraining on z-normalised weak labels (Adam, cosine schedule).

        ``labels``: a :class:`LabelTable` (rows found by canonical key, else formatted string;
        ``columns`` picks the columns, default all) or a mapping name -> array aligned with
        ``archs``. ``weights``: one per column (default 1). Returns ``{"loss": [per epoch]}``.
        Pretraining again starts from the seeded initial encoder.

        ``rank_weight``: add ``rank_weight`` x RankNet (ranking-aware pretraining, issue 15):
        for each label, the mean logistic loss over the batch's pairs that the label orders,
        weighted as the MSE terms. The MSE keeps the heads on the labels' scale (the hybrid
        head reads them); the pairwise term cares only about each label's order, so a
        heavy-tailed label weighs no more than its ranks. ``0``: AceNAS's MSE alone.

        ``compile``: run the training step through ``torch.compile`` (``True``: its default
        mode; a string: that mode, e.g. ``"reduce-overhead"`` for CUDA graphs on a GPU). The
        forward pass, its gradient and the Adam update become one graph
        (:meth:`FlatAdam.compiled_step`), except with dropout (its seeded masks cannot be drawn
        inside a graph) or CUDA graphs on a GPU: then the forward pass and loss alone. Dense
        path only (fixed shapes: one compilation per batch size, so two per run). Only long
        runs earn it back: on the 2-core CPU a batch-20 NB201 epoch took ~0.7x the eager time,
        after 10-60 s of compilation (BENCHMARKS.md, issue 16). Results match the eager run to
        float rounding, not bit for bit.
        """
        compile_mode = _check_compile(compile)
        if compile_mode is not None and not self._graphs.dense:
            raise NasrankError(
                f"compile={compile!r} needs the dense path (graphs of at most {DENSE_MAX_NODES} "
                "nodes, dense=True); this predictor uses sparse message passing")
        epochs = _check_positive_int("epochs", epochs)
        batch_size = _check_positive_int("batch_size", batch_size)
        lr, weight_decay = _check_nonneg_float("lr", lr), _check_nonneg_float("weight_decay", weight_decay)
        rank_weight = _check_nonneg_float("rank_weight", rank_weight)
        keys = self._keys(archs, "pretrain")
        names, mat = self._label_matrix(archs, keys, labels, columns)
        if weights is None:
            w = np.ones(len(names))
        elif isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(names))
            if unknown:
                raise NasrankError(f"weights name unknown labels {unknown}; labels are {names}")
            w = np.array([float(weights.get(n, 1.0)) for n in names])
        else:
            w = np.asarray(weights, dtype=np.float64).reshape(-1)
            if w.shape[0] != len(names):
                raise NasrankError(f"got {w.shape[0]} weights for {len(names)} labels {names}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise NasrankError(f"weights must be finite and >= 0, got {w.tolist()}")

        mean, std = mat.mean(axis=0), mat.std(axis=0)
        std = np.where(std > 0, std, 1.0)  # a constant label is all zeros after centring
        z = torch.tensor((mat - mean) / std, dtype=torch.float32)
        self.label_names, self.label_mean, self.label_std = names, mean, std
        self._measured = ({k: row for k, row in zip(keys, z.numpy())} if self.hybrid else {})

        # fresh start: seeded encoder + a seeded multi-task head sized for these labels
        self.net = self._build(num_tasks=len(names))
        self.net.load_state_dict(
            {k: v for k, v in self._init_state.items() if not k.startswith("aux_head")},
            strict=False,
        )
        # the loss is sum_j w_j mse_j / sum_j w_j: normalise the weights once, not every step
        w_t = torch.tensor(w / max(w.sum(), 1e-12), dtype=torch.float32, device=self.device)
        opt = _adam(self._trained_parameters("aux"), lr=lr, weight_decay=weight_decay)
        steps_per_epoch = math.ceil(len(keys) / batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt.optimizer, T_max=epochs * steps_per_epoch)
        gen = torch.Generator().manual_seed(self.seed * 1000 + 1)
        self.net.reseed_dropout(self.seed * 1000 + 3)
        history: dict[str, list[float]] = {"loss": []}
        batch_of = self._batcher(keys)
        z = z.to(self.device)
        net = self.net

        def module_loss(module, x, adj, mask, num_graphs, hparams, target):
            out = module.forward_aux(x, adj, mask, num_graphs, hparams)
            loss = ((out - target) ** 2).mean(dim=0) @ w_t
            if rank_weight > 0:  # each label's column is one list over the batch
                loss = loss + rank_weight * (ranknet_per_list(out.T, target.T)[0] @ w_t)
            return loss

        batch_loss = functools.partial(module_loss, net)  # compiled alone in one case below

        def eager_step(*inputs):
            loss = batch_loss(*inputs)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        train_step = eager_step
        self._compiled_whole_step = False
        if compile_mode is not None:
            mode = None if compile_mode == "default" else compile_mode
            # CUDA graphs (on a GPU, these two modes) want fixed input buffers, and the whole
            # step mutates Adam's; that combination is untested (no GPU lent), so there the
            # forward and loss are compiled alone, as before
            cuda_graphs = self.device.type == "cuda" and mode in ("reduce-overhead", "max-autotune")
            if opt.flat is not None and not _draws_dropout(net) and not cuda_graphs:
                # forward, backward and Adam as one graph (FlatAdam.compiled_step)
                train_step = opt.compiled_step(net, module_loss, mode=mode)
                self._compiled_whole_step = True
            else:  # dropout or CUDA graphs: compile the forward pass and loss only
                batch_loss = torch.compile(batch_loss, dynamic=False, mode=mode)
        self.net.train()
        try:
            for _ in tqdm(range(epochs), desc="pretrain", disable=not progress):
                perm = torch.randperm(len(keys), generator=gen)
                perm_dev = perm.to(self.device)  # one transfer per epoch, not one per step
                total = torch.zeros((), dtype=torch.float64, device=self.device)  # no sync per step
                for s in range(0, len(keys), batch_size):
                    idx, idx_dev = perm[s:s + batch_size], perm_dev[s:s + batch_size]
                    loss = train_step(*batch_of(idx, idx_dev).inputs(), z[idx_dev])
                    sched.step()
                    total.add_(loss.detach(), alpha=len(idx))
                history["loss"].append(float(total) / len(keys))
        finally:
            opt.release()
        self.pretrained = True
        self.loss_name = None
        self._clear_members()
        self._start_state = copy.deepcopy(self.net.state_dict())
        return history

    # ------------------------------------------------------------------ fine-tuning
    def _fit_targets(self, y: np.ndarray, loss: str) -> np.ndarray:
        if loss == "lambdarank":
            return acenas_relevance(y)
        return (y - self.y_mean) / self.y_std

    def fit(
        self, archs: Sequence[Any], y: Sequence[float], *, loss: str = "lambdarank",
        epochs: int = 300, batch_size: int = 20, lr: float | None = None,
        weight_decay: float = 5e-4, valid_fraction: float = 0.1, patience: int = 50,
        margin: float | str = 0.1, probe_alpha: float = 10.0, select: str | None = None,
        gain: str = "exp", ensemble: int = 1, progress: bool = False, mu: float = 0.0,
    ) -> RankingPredictor:
        """Fine-tune on real labels ``y`` (higher = better) with ``loss`` (one of
        ``lambdarank``, ``ranknet``, ``margin``, ``mse``); each batch of ``batch_size``
        architectures is one ranked list. After ``pretrain`` the ranking head starts as a ridge
        read-out (penalty ``probe_alpha``) of the pretrained multi-task head's hidden layer (see
        ``_linear_probe_init``); ``epochs`` of fine-tuning then go on from there. A
        ``valid_fraction`` split (at least 2 archs; none when 0 or with fewer than 6 archs)
        drives early stopping (``patience`` epochs) on the same loss, and the best weights
        (the starting weights included) are kept. Always restarts from the pretrained (or
        seeded initial) weights. ``lr=None``: 5e-3 from scratch (AceNAS), after ``pretrain``
        :data:`PRETRAINED_FINETUNE_LR`. ``select``: what early stopping keeps, ``"loss"``
        (lowest validation loss) or ``"kendall"`` (highest validation Kendall tau, the loss
        breaking ties; the start wins a tie, so fine-tuning never ends below its starting
        point's validation tau); ``None``: ``"kendall"`` for the ranking losses, ``"loss"``
        for ``mse``. ``gain``: LambdaRank's NDCG gain, ``"exp"`` (``2^rel - 1``, AceNAS) or
        ``"linear"`` (``rel``). ``mu``: LambdaRank only, the weight of LambdaLoss's NDCG-Loss2 term
        (``0``: plain LambdaRank, AceNAS; see :func:`lambdarank_loss`). ``ensemble``: fine-tune that many members from the same starting
        weights, each with its own validation split, batch order and dropout (member 0 is the
        plain fit); ``predict`` then averages the members' scores, each standardised on the fit
        set (MSE: the plain mean, in the units of ``y``). It averages out the noise of early
        stopping on a small validation split (BENCHMARKS.md, issue 15)."""
        loss_fn = get_loss(loss)
        ensemble = _check_positive_int("ensemble", ensemble)
        epochs = _check_positive_int("epochs", epochs)
        batch_size = _check_positive_int("batch_size", batch_size)
        patience = _check_positive_int("patience", patience)
        if lr is None:
            lr = PRETRAINED_FINETUNE_LR if self.pretrained else 5e-3
        lr, weight_decay = _check_nonneg_float("lr", lr), _check_nonneg_float("weight_decay", weight_decay)
        vf = _check_nonneg_float("valid_fraction", valid_fraction)
        probe_alpha = _check_nonneg_float("probe_alpha", probe_alpha)
        if vf >= 1:
            raise NasrankError(f"valid_fraction must be in [0, 1), got {valid_fraction!r}")
        if self.hybrid and not self.pretrained:
            raise NasrankError("a hybrid predictor reads pretrained weak labels: call pretrain() before fit()")
        if select is None:
            select = "loss" if loss == "mse" else "kendall"
        if select not in FIT_SELECT:
            raise NasrankError(f"select must be one of {FIT_SELECT}, got {select!r}")
        keys = self._keys(archs, "fit")
        y_arr = np.asarray(y, dtype=np.float64).reshape(-1)
        if y_arr.shape[0] != len(keys):
            raise NasrankError(f"fit got {len(keys)} architectures but {y_arr.shape[0]} labels; expected equal lengths")
        bad = np.flatnonzero(~np.isfinite(y_arr))
        if bad.size:
            raise NasrankError(
                f"label y[{bad[0]}] = {y_arr[bad[0]]} for architecture {keys[bad[0]]!r} is not finite "
                f"({bad.size} such labels)"
            )
        if len(keys) < 2:
            raise NasrankError(f"fit needs at least 2 architectures to rank, got {len(keys)}")
        if gain not in LAMBDARANK_GAINS:
            raise NasrankError(f"gain must be one of {LAMBDARANK_GAINS}, got {gain!r}")
        extra: dict[str, Any] = {"margin": margin} if loss == "margin" else {}
        mu = check_mu(mu)
        if mu and loss != "lambdarank":
            raise NasrankError(f"mu={mu!r} weighs LambdaRank's pairs; loss {loss!r} has none")
        if loss == "lambdarank":
            extra["gain"] = gain
            if mu:
                extra["mu"] = mu

        self.y_mean, self.y_std = float(y_arr.mean()), float(y_arr.std()) or 1.0
        target = torch.tensor(self._fit_targets(y_arr, loss), dtype=torch.float32)
        n_valid = int(round(vf * len(keys)))
        if vf > 0 and n_valid < 2:
            # a 1-item validation list has no pairs; below 6 archs keep them all for training
            n_valid = 2 if len(keys) >= 6 else 0
        if len(keys) - n_valid < 2:
            raise NasrankError(
                f"fit on {len(keys)} architectures with valid_fraction={valid_fraction} leaves "
                f"{len(keys) - n_valid} for training; expected at least 2"
            )
        run = dict(loss_fn=loss_fn, extra=extra, epochs=epochs, batch_size=batch_size, lr=lr,
                   weight_decay=weight_decay, patience=patience, probe_alpha=probe_alpha,
                   select=select, progress=progress, loss=loss)
        self._clear_members()
        first = None
        for k in range(ensemble):
            self._fit_member(keys, y_arr, target, n_valid, self._member_seed(k), **run)
            if k == 0 and ensemble > 1:
                first = copy.deepcopy(self.net.state_dict())
            elif k > 0:
                self._extra_nets.append(copy.deepcopy(self.net))
        if first is not None:
            self.net.load_state_dict(first)
            self._member_scale = [self._fit_scale(keys, net, loss) for net in self._members()]
        self.loss_name = loss
        return self

    def _member_seed(self, k: int) -> int:
        """Seed of ensemble member ``k``: member 0 uses ``self.seed`` (so ``ensemble=1`` is the
        plain fit), the others independent streams derived from it."""
        if k == 0:
            return self.seed
        return int(np.random.SeedSequence([self.seed, k]).generate_state(1)[0] % 2**31)

    def _members(self) -> list[PredictorNet]:
        return [self.net, *self._extra_nets]

    @torch.no_grad()
    def _fit_scale(self, keys: list[str], net: PredictorNet, loss: str) -> tuple[float, float]:
        """(mean, std) of ``net``'s scores on the fit set: each member's scores are standardised
        with these before averaging (ranking losses leave the scale of a score arbitrary). MSE
        members share the units of ``y`` already: (0, 1)."""
        if loss == "mse":
            return (0.0, 1.0)
        s = self._net_scores(net, list(dict.fromkeys(keys)), 4096)
        return (float(s.mean()), float(s.std()) or 1.0)

    @torch.no_grad()
    def _net_scores(self, net: PredictorNet, unique: list[str], batch_size: int) -> np.ndarray:
        """``net``'s raw scores of distinct keys, in eval mode, ``batch_size`` graphs at a time."""
        net.eval()
        out = [self._scores(self._batch(unique[s:s + batch_size]), unique[s:s + batch_size], net)
               .float().cpu() for s in range(0, len(unique), batch_size)]
        return torch.cat(out).numpy().astype(np.float64)

    def _fit_member(
        self, keys: list[str], y_arr: np.ndarray, target: torch.Tensor, n_valid: int, seed: int, *,
        loss_fn: Callable[..., torch.Tensor], extra: dict[str, Any], epochs: int, batch_size: int,
        lr: float, weight_decay: float, patience: int, probe_alpha: float, select: str,
        progress: bool, loss: str,
    ) -> None:
        """One fine-tuning run into ``self.net`` from the starting weights: the split, batch
        order and dropout come from ``seed``."""
        gen = torch.Generator().manual_seed(seed * 1000 + 2)
        perm = torch.randperm(len(keys), generator=gen)
        valid_idx, train_idx = perm[:n_valid], perm[n_valid:]

        self.net.load_state_dict(self._start_state)
        self.net.reseed_dropout(seed * 1000 + 4)
        if self.pretrained:
            self._linear_probe_init([keys[i] for i in train_idx.tolist()], target[train_idx].numpy(),
                                    probe_alpha)
        opt = _adam(self._trained_parameters("rank"), lr=lr, weight_decay=weight_decay)
        steps_per_epoch = math.ceil(len(train_idx) / batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt.optimizer, T_max=epochs * steps_per_epoch)
        valid_keys = [keys[i] for i in valid_idx.tolist()]
        valid_gb = self._batch(valid_keys) if n_valid else None
        valid_t = target[valid_idx].to(self.device)
        valid_y = y_arr[valid_idx.numpy()]

        def valid_loss() -> tuple[float, float]:
            """(criterion, loss) on the validation split, lower = better."""
            self.net.eval()
            with torch.no_grad():
                s = self._scores(valid_gb, valid_keys)
                v = float(loss_fn(s.unsqueeze(0), valid_t.unsqueeze(0), **extra))
            if select == "kendall":
                tau = kendall_tau(valid_y, s.double().cpu().numpy())
                return (-(tau if math.isfinite(tau) else 0.0), v)  # NaN: constant scores or labels
            return (v, v)

        best, best_state, since = (math.inf, math.inf), None, 0
        if valid_gb is not None:  # the starting point (e.g. the ridge read-out) competes too
            best, best_state = valid_loss(), copy.deepcopy(self.net.state_dict())
        batch_of = self._batcher(keys)
        target_dev = target.to(self.device)
        try:
            for _ in tqdm(range(epochs), desc=f"fit ({loss})", disable=not progress):
                self.net.train()
                order = train_idx[torch.randperm(len(train_idx), generator=gen)]
                order_dev = order.to(self.device)
                for s in range(0, len(order), batch_size):
                    idx, idx_dev = order[s:s + batch_size], order_dev[s:s + batch_size]
                    if len(idx) < 2 and loss != "mse":
                        continue  # a one-item list has no pairs to rank
                    batch_keys = [keys[i] for i in idx.tolist()] if self.net.hybrid_labels else ()
                    out = self._scores(batch_of(idx, idx_dev), batch_keys).unsqueeze(0)
                    l = loss_fn(out, target_dev[idx_dev].unsqueeze(0), **extra)
                    opt.zero_grad()
                    l.backward()
                    opt.step()
                    sched.step()
                if valid_gb is None:
                    continue
                v = valid_loss()
                if v[0] < best[0] - 1e-9 or (v[0] <= best[0] + 1e-9 and v[1] < best[1] - 1e-9):
                    best, since = v, 0
                    best_state = copy.deepcopy(self.net.state_dict())
                else:
                    since += 1
                    if since >= patience:
                        break
        finally:
            opt.release()
        if best_state is not None:
            self.net.load_state_dict(best_state)

    @torch.no_grad()
    def _linear_probe_init(self, keys: list[str], target: np.ndarray, alpha: float) -> None:
        """Start the ranking head as the pretrained multi-task head's hidden layer followed by a
        ridge regression (sklearn) of the fit targets on its activations, so fine-tuning starts
        from the best linear read-out of what pretraining learnt instead of a random head
        (linear probing before fine-tuning, Kumar et al., ICLR 2022). Exact: the ranking head
        is Linear -> ReLU -> Linear, and its first layer is a copy of the multi-task head's."""
        from sklearn.linear_model import Ridge

        self.net.eval()
        gb = self._batch(keys)
        aux_hidden = self.net.aux_head[0]
        feats = self.net.features(*gb.inputs())
        h = self.net.aux_head[:2](feats)  # the head's hidden layer and its activation
        x = h.double().cpu().numpy()
        if self.net.hybrid_labels:  # the read-out also sees the (measured or predicted) labels
            labels, known = self._measured_batch(keys)
            z = torch.where(known[:, None], labels, self.net.aux_head(feats))
            x = np.concatenate([x, z.double().cpu().numpy()], axis=1)
        ridge = Ridge(alpha=alpha).fit(x, target.astype(np.float64))
        coef = torch.tensor(ridge.coef_, dtype=torch.float32).reshape(1, -1)
        rank_hidden, rank_out = self.net.rank_head[0], self.net.rank_head[2]
        rank_hidden.load_state_dict(aux_hidden.state_dict())
        rank_out.weight.copy_(coef[:, :h.shape[1]])
        rank_out.bias.fill_(float(ridge.intercept_))
        if self.net.hybrid_labels:
            self.net.label_in.weight.zero_()
            self.net.label_skip.weight.copy_(coef[:, h.shape[1]:])

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, archs: Sequence[Any], *, batch_size: int = 4096) -> np.ndarray:
        """Scores of ``archs`` (higher = better), one float per architecture. Each distinct
        canonical key is scored once. After an MSE ``fit`` scores are in the units of ``y``.
        After an ensemble ``fit`` (``ensemble > 1``) a score is the mean of the members'
        scores, each standardised with its mean and std on the fit set, so an architecture's
        score does not depend on what else is scored with it."""
        batch_size = _check_positive_int("batch_size", batch_size)
        keys = self._keys(archs, "predict")
        unique = list(dict.fromkeys(keys))
        members = self._members()
        scores = np.zeros(len(unique))
        for k, net in enumerate(members):
            member = self._net_scores(net, unique, batch_size)
            if len(members) == 1:
                scores = member
            else:
                mean, std = self._member_scale[k]
                scores += (member - mean) / std / len(members)
        if self.loss_name == "mse":
            scores = scores * self.y_std + self.y_mean
        pos = {k: i for i, k in enumerate(unique)}
        return scores[[pos[k] for k in keys]]

    @torch.no_grad()
    def predict_labels(self, archs: Sequence[Any], *, batch_size: int = 4096) -> dict[str, np.ndarray]:
        """The pretraining heads' predictions of each weak label, in the labels' units."""
        if not self.pretrained:
            raise NasrankError("predict_labels needs a pretrained predictor; call pretrain() first")
        keys = self._keys(archs, "predict_labels")
        self.net.eval()
        outs = []
        for s in range(0, len(keys), batch_size):
            gb = self._batch(keys[s:s + batch_size])
            outs.append(self.net.forward_aux(*gb.inputs()).cpu())
        z = torch.cat(outs).numpy().astype(np.float64) * self.label_std + self.label_mean
        return {n: z[:, j] for j, n in enumerate(self.label_names)}

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike) -> None:
        """Write weights, the pretrained starting point, space and label normalisation."""
        cpu = lambda sd: {k: v.detach().cpu() for k, v in sd.items()}  # noqa: E731
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "space": self.space.name,
            "space_dims": [self.space.node_feature_dim, self.space.max_nodes, self.space.hparam_dim],
            "seed": self.seed,
            "hparams": dict(self.hparams_cfg),
            "hybrid": self.hybrid,
            "measured_keys": list(self._measured),
            "measured": (torch.from_numpy(np.stack(list(self._measured.values())))
                         if self._measured else torch.zeros(0)),
            "label_names": list(self.label_names),
            "label_mean": [float(v) for v in self.label_mean],
            "label_std": [float(v) for v in self.label_std],
            "pretrained": self.pretrained,
            "loss_name": self.loss_name,
            "y_mean": self.y_mean, "y_std": self.y_std,
            "state": cpu(self.net.state_dict()),
            "start_state": cpu(self._start_state),
            # ensemble members 1.. of an ensemble fit (absent before ensembles: one member)
            "members": [cpu(net.state_dict()) for net in self._extra_nets],
            "member_scale": [list(ms) for ms in self._member_scale],
        }
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{os.fspath(path)}.tmp"
        torch.save(ckpt, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, space: SearchSpace | None = None,
             device: str | torch.device = "cpu") -> RankingPredictor:
        """Read a checkpoint. With ``space`` given, a checkpoint of another space raises
        :class:`SpaceMismatchError`; without it the space is rebuilt from its name."""
        if not os.path.isfile(path):
            raise NasrankError(f"predictor checkpoint {os.fspath(path)!r} does not exist")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a corrupt or foreign file
            from nasrank.safeio import unreadable_checkpoint  # one line, not torch's six

            raise NasrankError(unreadable_checkpoint(
                path, err, "the stage that wrote it (pretrain or finetune)")) from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise NasrankError(f"{os.fspath(path)!r} is not a {CHECKPOINT_FORMAT} checkpoint")
        if space is None:
            from nasrank.spaces import get_space

            space = get_space(ckpt["space"])
        elif space.name != ckpt["space"]:
            raise SpaceMismatchError(
                f"checkpoint {os.fspath(path)!r} is for space {ckpt['space']!r}, expected {space.name!r}"
            )
        dims = [space.node_feature_dim, space.max_nodes, space.hparam_dim]
        if list(ckpt["space_dims"]) != dims:
            raise SpaceMismatchError(
                f"checkpoint {os.fspath(path)!r} has graph dims (node features, max nodes, hparams) "
                f"{ckpt['space_dims']}, but space {space.name!r} has {dims}"
            )
        p = cls(space, device=device, seed=ckpt["seed"], hybrid=bool(ckpt.get("hybrid", False)),
                **ckpt["hparams"])
        if ckpt.get("measured_keys"):  # absent from checkpoints before the hybrid head
            rows = ckpt["measured"].numpy().astype(np.float32)
            p._measured = {k: rows[i] for i, k in enumerate(ckpt["measured_keys"])}
        p.label_names = list(ckpt["label_names"])
        p.label_mean = np.asarray(ckpt["label_mean"], dtype=np.float64)
        p.label_std = np.asarray(ckpt["label_std"], dtype=np.float64)
        p.pretrained = bool(ckpt["pretrained"])
        p.loss_name = ckpt["loss_name"]
        p.y_mean, p.y_std = float(ckpt["y_mean"]), float(ckpt["y_std"])
        p.net = p._build(num_tasks=len(p.label_names))
        p.net.load_state_dict(ckpt["state"])
        p._start_state = {k: v.to(p.device) for k, v in ckpt["start_state"].items()}
        for state in ckpt.get("members", []):
            net = p._build(num_tasks=len(p.label_names))
            net.load_state_dict(state)
            p._extra_nets.append(net)
        p._member_scale = [(float(m), float(sd)) for m, sd in ckpt.get("member_scale", [])]
        if len(p._member_scale) != (p.ensemble_size if p._extra_nets else 0):
            raise NasrankError(f"{os.fspath(path)!r}: {p.ensemble_size} ensemble members but "
                               f"{len(p._member_scale)} member scales; the file is damaged")
        return p


__all__ = ["RankingPredictor", "LOSS_NAMES", "PRETRAINED_FINETUNE_LR"]
