"""The PyTorch proxy loader: epochs, seeds, halves, drop_last, workers, ranks, cycling, errors."""

import json
import os

import numpy as np
import pytest
import torch

from proxyfast.loaders import ProxySampler, cycle_loader, torch_loader

from _dist_launch import run_ranks
from _loader_data import index_dataset, index_proxy

N = 300
K = 50


def batch_indices(images):
    return images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()


def epoch_indices(loader, dataset):
    """One pass: the example indices in order, after checking pixels and labels against the source."""
    seen = []
    for images, labels in loader:
        idx = batch_indices(images)
        assert torch.equal(images, torch.from_numpy(dataset.images[idx.numpy()]).permute(0, 3, 1, 2))
        assert torch.equal(labels, torch.from_numpy(dataset.labels[idx.numpy()]))
        seen += idx.tolist()
    return seen


@pytest.fixture(scope="module")
def dataset():
    return index_dataset(N)


@pytest.fixture(scope="module")
def proxy():
    return index_proxy(N, K)


def part_of(proxy, part, portion=0.5):
    train, val = proxy.split(portion)
    return {"all": proxy.indices, "train": train, "val": val}[part].tolist()


@pytest.mark.parametrize("part", ["all", "train", "val"])
def test_every_epoch_yields_the_part_once_each_in_a_new_order(dataset, proxy, part):
    loader = torch_loader(dataset, proxy, part=part, batch_size=7, seed=5)
    epochs = [epoch_indices(loader, dataset) for _ in range(3)]
    expected = sorted(part_of(proxy, part))
    for seen in epochs:
        assert sorted(seen) == expected
    assert len({tuple(seen) for seen in epochs}) == 3


def test_the_same_seed_gives_the_same_epochs_and_another_seed_others(dataset, proxy):
    loaders = [torch_loader(dataset, proxy, batch_size=8, seed=s) for s in (4, 4, 9)]
    runs = [[epoch_indices(loader, dataset) for _ in range(2)] for loader in loaders]
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0] and runs[0][1] != runs[2][1]


def test_set_epoch_chooses_the_epoch_and_passes_advance_from_it(dataset, proxy):
    loader = torch_loader(dataset, proxy, batch_size=16, seed=2)
    auto = [epoch_indices(loader, dataset) for _ in range(4)]  # epochs 0, 1, 2, 3
    loader.sampler.set_epoch(2)
    assert epoch_indices(loader, dataset) == auto[2]
    assert epoch_indices(loader, dataset) == auto[3]
    loader.sampler.set_epoch(0)
    assert epoch_indices(loader, dataset) == auto[0]


def test_train_and_val_are_disjoint_and_cover_the_proxy(dataset, proxy):
    for portion in (0.5, 0.3):
        train = epoch_indices(torch_loader(dataset, proxy, "train", 8, train_portion=portion), dataset)
        val = epoch_indices(torch_loader(dataset, proxy, "val", 8, train_portion=portion), dataset)
        assert not set(train) & set(val)
        assert sorted(train + val) == sorted(proxy.indices.tolist())
        assert len(train) == int(np.floor(portion * K))


def test_shuffle_false_streams_the_proxy_order(dataset, proxy):
    loader = torch_loader(dataset, proxy, batch_size=9, shuffle=False)
    assert epoch_indices(loader, dataset) == epoch_indices(loader, dataset) == proxy.indices.tolist()


@pytest.mark.parametrize("drop_last", [False, True])
def test_drop_last_drops_only_the_incomplete_last_batch(dataset, proxy, drop_last):
    loader = torch_loader(dataset, proxy, batch_size=8, drop_last=drop_last, seed=1)
    sizes = [len(labels) for _, labels in loader]
    assert sizes == ([8] * 6 if drop_last else [8] * 6 + [2])
    assert len(loader) == len(sizes)
    seen = epoch_indices(loader, dataset)
    assert len(set(seen)) == len(seen) == (48 if drop_last else 50)
    assert set(seen) <= set(proxy.indices.tolist())


def test_workers_give_the_same_epochs_as_the_main_process(dataset, proxy):
    main = torch_loader(dataset, proxy, batch_size=8, seed=6)
    workers = torch_loader(dataset, proxy, batch_size=8, seed=6, num_workers=2, persistent_workers=True)
    for _ in range(2):
        seen = epoch_indices(workers, dataset)
        assert seen == epoch_indices(main, dataset)
        assert sorted(seen) == sorted(proxy.indices.tolist())


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_ranks_share_each_epoch_evenly(dataset, proxy, world_size, drop_last):
    whole = torch_loader(dataset, proxy, batch_size=4, seed=8)
    shards = [torch_loader(dataset, proxy, batch_size=4, seed=8, rank=r, world_size=world_size, drop_last=drop_last)
              for r in range(world_size)]
    for _ in range(2):
        order = epoch_indices(whole, dataset)
        seen = [epoch_indices(shard, dataset) for shard in shards]
        if drop_last:  # whole batches only, and no example twice
            per_rank = (K // world_size) // 4 * 4
            assert all(len(s) == per_rank for s in seen)
            flat = sum(seen, [])
            assert len(set(flat)) == len(flat)
        else:  # every example, padded with the first ones of the epoch's order
            per_rank = -(-K // world_size)
            padded = (order * 2)[: per_rank * world_size]
            assert [padded[r::world_size] for r in range(world_size)] == seen
            assert set(sum(seen, [])) == set(order)


def test_more_ranks_than_examples_wrap_around(dataset):
    shards = [epoch_indices(torch_loader(dataset, [3, 4], batch_size=4, rank=r, world_size=5), dataset)
              for r in range(5)]
    assert all(len(s) == 1 for s in shards) and {s[0] for s in shards} == {3, 4}


def _loader_rank(rank, world_size, out_dir):
    """On a rank of a gloo group: the loader built without rank or world_size."""
    loader = torch_loader(index_dataset(N), index_proxy(N, K), batch_size=4, seed=0)
    result = {"rank": loader.sampler.rank, "world_size": loader.sampler.world_size,
              "indices": epoch_indices(loader, index_dataset(N))}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def test_rank_and_world_size_default_to_torch_distributed(tmp_path, dataset, proxy):
    """Two processes in a real gloo group: each loader takes its rank and the world size
    from torch.distributed and reads the shard an explicit rank would."""
    assert run_ranks(_loader_rank, 2, str(tmp_path)) == [0, 0]
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.json") as f:
            result = json.load(f)
        assert (result["rank"], result["world_size"]) == (rank, 2)
        explicit = torch_loader(dataset, proxy, batch_size=4, seed=0, rank=rank, world_size=2)
        assert result["indices"] == epoch_indices(explicit, dataset)
    assert not torch.distributed.is_initialized()  # the test process never joined a group


def test_cycle_loader_goes_on_forever_reshuffling_each_pass(dataset, proxy):
    loader = torch_loader(dataset, proxy, part="val", batch_size=5, seed=2)
    passes = []
    cycle = cycle_loader(loader)
    for _ in range(3):
        seen = []
        for _ in range(len(loader)):
            images, labels = next(cycle)
            seen += batch_indices(images).tolist()
        passes.append(seen)
    assert cycle.passes == 3
    assert all(sorted(p) == sorted(part_of(proxy, "val")) for p in passes)
    assert len({tuple(p) for p in passes}) == 3
    with pytest.raises(ValueError, match="empty loader"):
        next(cycle_loader(torch_loader(dataset, [1, 2], batch_size=4, drop_last=True)))


def test_sampler_orders_are_a_pure_function_of_seed_and_epoch():
    a = ProxySampler(np.arange(10, 40), seed=3)
    b = ProxySampler(torch.arange(10, 40), seed=3)
    assert [list(a) for _ in range(3)] == [b.order(e).tolist() for e in range(3)]
    assert len(a) == 30 and a.epoch == 3


def test_bad_input_raises_clear_errors(dataset, proxy):
    small = index_dataset(N - 1)
    with pytest.raises(ValueError, match=f"selected from {N:,} examples, but the dataset .* holds {N - 1:,}"):
        torch_loader(small, proxy)
    with pytest.raises(ValueError, match=f"index {N} is out of range for the dataset .* of {N:,} examples"):
        torch_loader(dataset, [0, N])
    with pytest.raises(ValueError, match="index -1 is out of range"):
        torch_loader(dataset, [-1, 3])
    with pytest.raises(ValueError, match="duplicates"):
        torch_loader(dataset, [2, 2])
    with pytest.raises(ValueError, match="part must be one of"):
        torch_loader(dataset, proxy, part="arch")
    with pytest.raises(ValueError, match="train_portion"):
        torch_loader(dataset, proxy, part="train", train_portion=1.5)
    with pytest.raises(TypeError, match="sampler"):
        torch_loader(dataset, proxy, sampler=None)
    with pytest.raises(ValueError, match="rank must be in"):
        torch_loader(dataset, proxy, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        torch_loader(dataset, proxy, batch_size=0)
    with pytest.raises(ValueError, match="seed"):
        torch_loader(dataset, proxy, seed=-1)


@pytest.mark.parametrize("world_size, drop_last", [(1, False), (1, True), (3, False), (3, True)])
def test_sampler_orders_equal_the_documented_permutation_dealt_out(world_size, drop_last):
    indices = np.arange(100, 131)  # 31 indices: 31 % 3 = 1 is padded or dropped
    order = {r: ProxySampler(indices, seed=11, rank=r, world_size=world_size, drop_last=drop_last)
             for r in range(world_size)}
    per_rank = 31 // world_size if drop_last else -(-31 // world_size)
    for epoch in (0, 1, 5):
        permuted = indices[np.random.default_rng([11, epoch]).permutation(31)]
        dealt = np.resize(permuted, per_rank * world_size)
        for r, sampler in order.items():
            assert len(sampler) == per_rank
            got = sampler.order(epoch)
            assert got.dtype == np.int64
            assert got.tolist() == dealt[r::world_size].tolist()
    unshuffled = ProxySampler(indices, shuffle=False, rank=1, world_size=3)
    assert unshuffled.order(4).tolist() == np.resize(indices, 33)[1::3].tolist()


def test_sampler_repr_and_errors_are_whole():
    sampler = ProxySampler(torch.tensor([5, 1, 2], dtype=torch.int32), seed=4, rank=1, world_size=2, drop_last=True)
    assert sampler.indices.dtype == np.int64
    assert repr(sampler) == "ProxySampler(k=3, shuffle=True, seed=4, rank=1, world_size=2, drop_last=True, epoch=0)"
    assert iter(sampler) is not None and sampler.advance() == 1 and sampler.epoch == 2
    sampler.set_epoch(7)
    assert repr(sampler).endswith("epoch=7)")
    with pytest.raises(TypeError, match=r"^indices must be a 1-D sequence of integers, got float64 \(2,\)$"):
        ProxySampler([1.0, 2.0])
    with pytest.raises(TypeError, match=r"^indices must be a 1-D sequence of integers, got int64 \(1, 2\)$"):
        ProxySampler([[1, 2]])
    assert len(ProxySampler([])) == 0
    with pytest.raises(ValueError, match=r"^rank must be in \[0, world_size = 2\), got 2$"):
        ProxySampler([1], rank=2, world_size=2)
    with pytest.raises(ValueError, match="^epoch "):
        sampler.set_epoch(-1)
    with pytest.raises(ValueError, match="^world_size "):
        ProxySampler([1], rank=0, world_size=0)
    with pytest.raises(ValueError, match="^rank "):
        ProxySampler([1], rank=-1, world_size=2)


def test_loader_refuses_each_argument_it_sets_itself_and_cycles_name_the_loader(dataset, proxy):
    # (shuffle is torch_loader's own argument, so it never reaches the DataLoader's.)
    for reserved in ("sampler", "batch_sampler"):
        with pytest.raises(TypeError, match=rf"^torch_loader sets the DataLoader's '{reserved}' itself; "
                                            "it cannot be passed$"):
            torch_loader(dataset, proxy, **{reserved: None})
    loader = torch_loader(dataset, proxy, batch_size=8, seed=3)
    assert loader.batch_size == 8 and loader.sampler.seed == 3
    # Worker seeds come from a generator seeded with the loader's seed.
    assert loader.generator.initial_seed() == 3
    cycle = cycle_loader(loader)
    assert iter(cycle) is cycle and cycle.passes == 0
    next(cycle)
    assert cycle.passes == 1
    with pytest.raises(ValueError, match=r"^cannot cycle over an empty loader \(DataLoader yields no batch\)$"):
        next(cycle_loader(torch_loader(dataset, [1, 2], batch_size=4, drop_last=True)))


def test_rank_defaults_to_one_process_outside_torch_distributed(dataset, proxy):
    from proxyfast.loaders import distributed_rank

    assert not torch.distributed.is_initialized()
    assert distributed_rank() == (0, 1)
    assert distributed_rank(None, 3) == (0, 3)
    assert distributed_rank(2, 3) == (2, 3)


def test_loader_defaults_are_the_documented_ones(dataset, proxy):
    loader = torch_loader(dataset, proxy)
    assert (loader.batch_size, loader.num_workers, loader.drop_last) == (64, 0, False)
    sampler = loader.sampler
    assert (sampler.seed, sampler.shuffle, sampler.rank, sampler.world_size, sampler.drop_last) == (0, True, 0, 1, False)
    assert sampler.indices.tolist() == proxy.indices.tolist()
    train = torch_loader(dataset, proxy, part="train").sampler.indices
    assert train.tolist() == proxy.split(0.5)[0].tolist()


def test_batch_size_is_checked_in_the_shared_wording(dataset, proxy):
    with pytest.raises(ValueError, match=r"^batch_size must be at least 1, got 0$"):
        torch_loader(dataset, proxy, batch_size=0)
    assert [len(labels) for _, labels in torch_loader(dataset, [4, 7], batch_size=1)] == [1, 1]
