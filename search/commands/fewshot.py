"""``nasrank fewshot``: split a supernet into sub-supernets, train every leaf, label archs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nasrank.registry import Config, component, option
from nasrank.search.registry import COMMANDS

from . import Command, Console, resolve_device
from .stages import DATA_ROOT, DATASET, DEVICE, IMAGE_SIZE, OUT, SEED, SPACES, SUPERNETS
from .stages import _supernet_for_space

METRIC = Literal["gm", "grad_norm", "snip", "grasp", "synflow", "jacov", "jacob_cov", "ntk",
                 "linear_regions"]


@COMMANDS.register("fewshot")
@dataclass(frozen=True)
class FewShotCommand(Command):
    """Few-shot supernet: split by a metric (constant policy), train leaves, weak labels.

    The splitting tree (``out/fewshot/tree.json``) is built on a freshly initialised supernet
    with the chosen metric (gradient matching after ``warmup_epochs`` of restricted training per
    split, or a zero-cost proxy); every leaf is then trained from scratch for ``epochs``
    (checkpointed under ``out/fewshot/leaves``) and ``num_archs`` random architectures get weak
    labels from the leaf that contains each (``out/fewshot/weak_labels.csv``). Rerunning with the
    same folder resumes.
    """

    examples = ("  nasrank fewshot --out runs/fs --metric synflow --depth 1 --branching 2\n"
                "  nasrank fewshot --metric gm --warmup-epochs 2 --depth 2 --epochs 10\n")

    out: str = option("runs/fewshot", OUT)
    dataset: str = option("digits", DATASET)
    data_root: str | None = option(None, DATA_ROOT)
    image_size: int | None = option(None, IMAGE_SIZE, low=4)
    space: Config = component(SPACES, "nb201", "search space")
    supernet: Config | None = component(SUPERNETS, "auto", "weight-sharing supernet",
                                        auto=_supernet_for_space)
    metric: METRIC = option("gm", "split metric: gm (gradient matching) or a zero-cost proxy")
    depth: int = option(1, "splitting depth (constant policy)", low=0)
    branching: int = option(2, "groups per split (constant policy)", low=2)
    balanced: bool = option(True, "only balanced partitions (group sizes within one)")
    paths: int = option(4, "sampled paths per split metric", low=1)
    metric_batch_size: int = option(64, "images per batch of the split metric", low=2)
    warmup_epochs: int = option(0, "restricted training epochs before each split", low=0)
    epochs: int = option(5, "training epochs of every leaf", low=1)
    batch_size: int = option(64, "images per batch", low=1)
    lr: float = option(0.05, "SGD learning rate (cosine schedule)", low=0.0, low_open=True)
    num_archs: int = option(100, "architectures to label (0: none)", low=0)
    seed: int = option(0, SEED, low=0)
    device: str = option("auto", DEVICE)

    def check(self) -> None:
        from nasrank.search.stages import check_supernet_space

        check_supernet_space(self.space, self.supernet)

    def run(self, console: Console) -> None:
        import json
        from pathlib import Path

        from nasrank.errors import ConfigError
        from nasrank.launch import launched_rank
        from nasrank.safeio import write_text_atomic
        from nasrank.search import stages
        from nasrank.spaces import sample_unique
        from nasrank.supernet.fewshot import (ConstantPolicy, Node, RestrictedUniformSampler,
                                              build_tree, fewshot_weak_labels, train_fewshot)
        from nasrank.supernet.train import epoch_order, get_batch
        from nasrank.supernet.trainer import train_supernet

        rank = launched_rank()[0]  # under torchrun rank 0 writes; every rank trains
        device = resolve_device(self.device)
        if self.supernet is None:
            raise ConfigError(f"no supernet serves space {self.space.name!r}")
        seeds = stages.Seeds(self.seed)
        space = self.space.build()
        data = stages.load_data(self.dataset, self.data_root, seed=seeds.int("data"),
                                image_size=self.image_size)
        folder = Path(self.out) / "fewshot"
        folder.mkdir(parents=True, exist_ok=True)

        def make():
            return self.supernet.build(space, num_classes=data.num_classes,
                                       in_channels=data.input_shape[0],
                                       seed=seeds.int("supernet_init"))

        tree_path = folder / "tree.json"
        settings = {k: v for k, v in self.to_dict().items()
                    if k not in ("name", "out", "device", "epochs", "num_archs")}
        if tree_path.exists():
            saved = json.loads(tree_path.read_text())
            if saved["settings"] != json.loads(json.dumps(settings)):
                raise ConfigError(f"{str(tree_path)!r} was built with other settings; use "
                                  f"another --out")
            tree = Node.from_dict(saved["tree"])
        else:
            order = epoch_order(len(data.train), seeds.int("split_batches"), 0)
            n = self.metric_batch_size
            batches = [get_batch(data.train, order[i * n:(i + 1) * n], device)
                       for i in range(max(1, min(4, len(order) // n)))]
            warmup = None
            if self.warmup_epochs:
                def warmup(net, allowed):
                    train_supernet(net, data, RestrictedUniformSampler(net, allowed),
                                   epochs=self.warmup_epochs, batch_size=self.batch_size,
                                   lr=self.lr, device=device, seed=seeds.int("warmup"),
                                   progress=console.progress)
            console.say(f"splitting by {self.metric} (depth {self.depth}, b = {self.branching})")
            tree = build_tree(make().to(device), ConstantPolicy(self.depth, self.branching),
                              self.metric, batches, paths=self.paths, balanced=self.balanced,
                              seed=seeds.int("split"), device=device, warmup=warmup)
            if rank == 0:  # under torchrun every rank built the same tree; rank 0 writes it
                write_text_atomic(tree_path, json.dumps({"settings": settings,
                                                         "tree": tree.to_dict()}))
        leaves = [lf.allowed for lf in tree.leaves()]
        console.say(f"{len(leaves)} leaves; training each for {self.epochs} epochs")
        if len(leaves) < self.branching ** self.depth:
            console.say(f"note: {len(leaves)} leaves, not {self.branching ** self.depth}: a node "
                        f"stays a leaf when no decision point it has not split yet has "
                        f">= {self.branching} choices")
        fs, cost = train_fewshot(leaves, make, data, epochs=self.epochs,
                                 batch_size=self.batch_size, lr=self.lr,
                                 seed=seeds.int("supernet_train"), device=device,
                                 checkpoint_dir=folder / "leaves", progress=console.progress)
        console.say(f"leaves trained: {cost['leaf_epochs']} leaf-epochs, {cost['steps']} steps, "
                    f"{cost['seconds']:.0f} s")
        if self.num_archs and rank == 0:  # labelling is not distributed: rank 0 alone
            archs = sample_unique(space, self.num_archs, seeds.rng("weak_label_archs"))
            table = fewshot_weak_labels(fs, archs, data, folder / "labels", device=device,
                                        seed=seeds.int("weak_labels"),
                                        progress=console.progress)
            table.to_csv(folder / "weak_labels.csv")
            console.say(f"{len(table)} rows in {folder / 'weak_labels.csv'}")
