"""What each rank runs in the distributed tests (importable by spawned processes)."""

import os

import torch
from torch import nn

from proxyfast.data import ImageArrayDataset
from proxyfast.distributed import IncompleteScoresError, score_sharded, select_once


class TinyNet(nn.Module):
    """A small classifier with batch norm and a linear head (its input: the features).

    A forward pass that starts after ``die_after`` examples ends the process abruptly
    (``os._exit``, as a crashed rank would); one after ``fail_after`` examples raises.
    ``seen`` counts the examples scored.
    """

    def __init__(self, in_channels=1, num_classes=5):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.head = nn.Linear(24, num_classes)
        self.die_after = None
        self.fail_after = None
        self.seen = 0

    def forward(self, x):
        if self.die_after is not None and self.seen >= self.die_after:
            os._exit(17)
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise RuntimeError("simulated failure")
        self.seen += len(x)
        return self.head(self.body(x))


def make_dataset(images, labels):
    return ImageArrayDataset(images, labels, name="random")


def make_model(state):
    model = TinyNet()
    model.load_state_dict(state)
    return model.eval()


def score_and_select(rank, world_size, out_dir, images, labels, state, work_dir, shard_size, batch_size,
                     die_after, select_kwargs):
    """Sharded scoring then one selection; rank 1 dies after ``die_after`` examples if set."""
    model = make_model(state)
    if rank == 1:
        model.die_after = die_after
    result = {}
    try:
        scores = score_sharded(model, make_dataset(images, labels), work_dir,
                               shard_size=shard_size, batch_size=batch_size, features=True, timeout=30)
        proxy = select_once(scores, **select_kwargs)
        result["proxy"] = proxy.indices
        result["fingerprint"] = proxy.fingerprint
        if scores is not None:
            result["scores"] = {name: getattr(scores, name) for name in
                                ("entropy", "log10_entropy", "labels", "predictions", "features")}
            result["meta"] = scores.meta
    except IncompleteScoresError as error:
        result["error"] = str(error)
        result["missing"] = error.missing
    result["seen"] = model.seen
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def search_config(algo, order, seed, **overrides):
    """A tiny search: 3 cells of 4 channels, 2 nodes, batches of 4 per rank."""
    from proxyfast.nas.search import SearchConfig

    settings = dict(order=order, channels=4, layers=3, steps=2, multiplier=2, batch_size=4, augment=False,
                    epochs=1, warmup_epochs=0, seed=seed)
    if algo == "pcdarts":
        settings["partial_channels"] = 2
    return SearchConfig.for_algo(algo, **{**settings, **overrides})


def one_search_step(config, train_batch, val_batch, bn_mode, update_arch=True):
    """One search step (built and run as the library does) and what it computed: the
    weights' gradient (after clipping), the architecture gradient the Adam step used
    (empty without an architecture step), the updated parameters and the two losses."""
    from proxyfast.nas.search import build_search, search_step

    state = build_search(config, in_channels=3, num_classes=5, steps_per_epoch=4)
    state.model.train(bn_mode == "train")
    arch_grads = []
    state.architect.optimizer.register_step_pre_hook(
        lambda optimizer, args, kwargs: arch_grads.extend(p.grad.clone() for p in state.architect.arch_params))
    loss, val_loss = search_step(state, train_batch, val_batch, update_arch=update_arch)
    return {
        "weight_grads": [p.grad.clone() for p in state.optimizer.param_groups[0]["params"]],
        "arch_grads": arch_grads,
        "params": {name: value.clone() for name, value in state.model.state_dict().items()},
        "loss": loss, "val_loss": val_loss,
    }


def ddp_suite(rank, world_size, out_dir, seed, step_cases, train_batch, val_batch, images, labels):
    """Under DDP: one search step per case of ``step_cases`` ((algo, order, bn_mode,
    update_arch, config overrides)), each rank on its contiguous slice of the global
    batches; then a short ``search`` and a short ``train_network`` on
    ``images``/``labels``. Saves what each computed, by case."""
    import dataclasses

    from proxyfast.nas.search import search
    from proxyfast.nas.train import train_network

    def local(batch):
        per_rank = len(batch[1]) // world_size
        return tuple(t[rank * per_rank:(rank + 1) * per_rank] for t in batch)

    results = {"steps": {}}
    for algo, order, bn_mode, update_arch, overrides in step_cases:
        results["steps"][algo, order, bn_mode, update_arch] = one_search_step(
            search_config(algo, order, seed, **overrides), local(train_batch), local(val_batch), bn_mode, update_arch)

    dataset = ImageArrayDataset(images, labels, name="random", classes=list(range(5)))
    config = dataclasses.replace(search_config("darts", 1, seed), augment=True)
    found = search(dataset, None, config, os.path.join(out_dir, "search"), progress=False, log=None, plots=False)
    results["search"] = {
        "genotype": str(found.genotype),
        "params": {name: value.clone() for name, value in found.state.model.named_parameters()},
        "files": sorted(found.files),
    }
    trained = train_network(found.genotype, dataset, epochs=1, channels=4, layers=3, batch_size=8, seed=seed,
                            device="cpu", progress=False, log=None)
    results["train"] = {name: value.clone() for name, value in trained.model.named_parameters()}
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
