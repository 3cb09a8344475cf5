"""Scaling out on ``torch.distributed``: sharded scoring, one selection for all ranks.

Run under ``torchrun`` (docs/distributed.md has the command lines)::

    env = proxyfast.distributed.init_distributed()          # from torchrun's environment
    scores = proxyfast.distributed.score_sharded(model, dataset, "work/train.shards", device=env.device)
    proxy = proxyfast.distributed.select_once(scores, fraction=0.1, method="p1", seed=0)

:func:`score_sharded` splits the dataset into shards of contiguous index ranges, deals
the shards that are not done yet to the ranks, and writes each finished shard to a work
directory atomically. Every example is scored exactly once (no padding duplicates, as a
``DistributedSampler`` would add), and the merged :class:`~proxyfast.Scores` equal those
of one process. A rank that fails or dies makes every surviving rank raise
:class:`IncompleteScoresError` naming the missing shards; running the same job again
scores only those. :func:`select_once` selects on rank 0 and broadcasts the proxy, so
every rank holds the same indices whatever the world size.

Work directory layout::

    manifest.json               what the shards belong to: model, dataset, shard size, settings
    shard-000000.pxscores       one scores file per shard (format in proxyfast.scoring),
    shard-000001.pxscores       its meta naming its index range

The coordination messages go through a separate gloo process group with a timeout, so
that a lost rank raises an error on the others instead of blocking them, whatever the
backend of the default group (NCCL on GPUs).
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import distributed as dist
from torch import nn

from ._atomic import atomic_write
from ._checks import check_device, check_int
from ._version import __version__
from .runtime import Progress
from .data import dataset_fingerprint
from .loaders.pytorch import distributed_rank
from .selection import ProxySet
from .scoring import Scores, model_info, score
from .selection import select

__all__ = [
    "DistributedEnv",
    "IncompleteScoresError",
    "init_distributed",
    "merge_shards",
    "remove_shards",
    "run_job",
    "score_sharded",
    "select_once",
    "shard_ranges",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "proxyfast-score-shards"
MANIFEST_VERSION = 1
DEFAULT_SHARD_SIZE = 16384
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)
_SHARD_NAME = re.compile(r"shard-(\d{6})\.pxscores")
# What atomic_write leaves behind when its process is killed mid-write (from any host:
# the work directory may be shared); also the names of earlier versions, without the pid.
_STALE_TEMPORARY = re.compile(r"\.shard-\d{6}\.pxscores\.(?:[0-9a-f]{8}-\d+\.)?[0-9a-f]+\.tmp")


class IncompleteScoresError(RuntimeError):
    """Sharded scoring ended with shards missing: a rank failed or died.

    Attributes:
        missing: the indices of the missing shards.
        work_dir: the work directory, which keeps the completed shards for a restart.
    """

    def __init__(self, message: str, missing: list[int], work_dir: str) -> None:
        super().__init__(message)
        self.missing = missing
        self.work_dir = work_dir


class DistributedEnv(NamedTuple):
    """This process's place in the job: rank, world size, local rank and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str | None = None, timeout: float | datetime.timedelta = DEFAULT_TIMEOUT,
                     device: torch.device | str | None = None) -> DistributedEnv:
    """Joins the job that ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).

    With CUDA, each process takes the GPU of its local rank and the backend defaults to
    NCCL; without, the CPU and gloo. Outside ``torchrun`` (no ``WORLD_SIZE``) nothing
    is initialised and the process is rank 0 of 1. A process group that is already
    initialised is kept. Call ``torch.distributed.destroy_process_group()`` at the end.

    Args:
        backend: ``"nccl"``, ``"gloo"``, ...; default from the device.
        timeout: how long a collective may wait for the other ranks (seconds or timedelta).
        device: this process's device; default ``cuda:<LOCAL_RANK>`` when CUDA is
            available, else the CPU.
    """
    timeout = _as_timedelta(timeout)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device is None:
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        if backend is None:
            backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timeout)
    rank, world_size = distributed_rank()
    return DistributedEnv(rank, world_size, local_rank, device)


def run_job(body: Callable[[torch.device, bool], None], device: torch.device) -> None:
    """Runs ``body(device, is_main)`` once in a plain process; under ``torchrun``
    (``WORLD_SIZE`` set) as this process's rank of the job, with the process group joined
    before and left after (each rank on the GPU of its local rank when ``device`` is a
    GPU). ``is_main`` tells the rank that prints and writes."""
    if "WORLD_SIZE" not in os.environ:
        body(device, True)
        return
    env = init_distributed(device="cpu" if torch.device(device).type == "cpu" else None)
    try:
        body(env.device, env.is_main)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` index range of each shard of ``n`` examples: contiguous,
    ``shard_size`` each, the last one shorter."""
    return [(start, min(start + shard_size, n)) for start in range(0, n, shard_size)]


def shard_path(work_dir: str | os.PathLike, shard: int) -> str:
    """The file of shard ``shard`` in ``work_dir``."""
    return os.path.join(work_dir, f"shard-{shard:06d}.pxscores")


def score_sharded(
    model: nn.Module,
    dataset,
    work_dir: str | os.PathLike,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    features: bool = False,
    feature_layer: str | None = None,
    amp: bool = False,
    num_workers: int = 0,
    progress: bool = False,
    timeout: float | datetime.timedelta = DEFAULT_TIMEOUT,
    all_ranks: bool = False,
    log: Callable[[str], None] | None = None,
) -> Scores | None:
    """Scores ``dataset`` with ``model`` split over the ranks of ``torch.distributed``,
    resumably; equal to :func:`proxyfast.score` in one process.

    Call it on every rank (or in a single process, where it is a resumable
    :func:`~proxyfast.score`). The examples are cut into shards of ``shard_size``
    contiguous indices; the shards not yet in ``work_dir`` are dealt to the ranks in
    turn (rank ``r`` takes the ``r``-th, ``r + world_size``-th, ... missing shard) and
    each is written there atomically when done. A restart with the same model,
    dataset and settings scores only the missing shards, whatever the world size.

    When ``shard_size`` is a multiple of ``batch_size``, every batch holds the same
    examples as in :func:`proxyfast.score` with that batch size, so the scores are
    identical to it, bit for bit on the same hardware.

    Args:
        model, dataset, batch_size, features, feature_layer, amp, num_workers: as for
            :func:`proxyfast.score`.
        work_dir: a directory that every rank can read and write (on several nodes, a
            shared file system); created when missing.
        shard_size: examples per shard; fixed for the life of a work directory.
        device: where this rank scores; default the device of the model's parameters.
        progress: a progress bar on rank 0, counting its own shards' examples.
        timeout: how long a rank waits for the others at the start and at the end
            (seconds or timedelta); it must cover the slowest rank's lag.
        all_ranks: return the merged scores on every rank, not only on rank 0.
        log: called on rank 0 with a line on the shards done and to do.

    Returns:
        The merged :class:`~proxyfast.Scores` of all N examples, on the CPU, on rank 0
        (and on every rank with ``all_ranks``); None on the other ranks. Their
        ``meta["scoring"]["shards"]`` says how many shards there were, of what size, and
        how many were found done at the start.

    Raises:
        IncompleteScoresError: a rank failed or died before its shards were written;
            the message names the missing shards, which a restart computes.
        ValueError: bad arguments, a work directory of another run, ranks with
            different models or data, or a work directory some rank cannot see.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, value in (("shard_size", shard_size), ("batch_size", batch_size)):
        check_int(name, value)
    if device is not None:
        device = check_device("device", device)
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty")
    work_dir = os.fspath(work_dir)
    timeout = _as_timedelta(timeout)
    rank, world_size = distributed_rank()
    say = log if (log is not None and rank == 0) else (lambda _: None)
    ranges = shard_ranges(n, shard_size)

    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "n": n,
        "shard_size": shard_size,
        "num_shards": len(ranges),
        "model": model_info(model),
        "dataset": {"name": getattr(dataset, "name", type(dataset).__name__), "n": n,
                    "fingerprint": dataset_fingerprint(dataset)},
        "scoring": {"batch_size": batch_size, "amp": bool(amp), "features": bool(features),
                    "feature_layer": feature_layer},
    }
    score_options = dict(batch_size=batch_size, device=device, features=features, feature_layer=feature_layer,
                         amp=amp, num_workers=num_workers)

    with _control_group(world_size, timeout) as group:
        # Every rank must score the same thing.
        _check_same_run(_all_gather(_identity(manifest), group))
        done = _open_work_dir(work_dir, manifest, rank, group)
        done_set = set(done)
        pending = [s for s in range(len(ranges)) if s not in done_set]
        mine = pending[rank::world_size]
        say(f"scoring {n:,} examples in {len(ranges)} shards of {shard_size:,} on {world_size} rank(s): "
            f"{len(done)} done already, {len(pending)} to score")
        bar = Progress(sum(ranges[s][1] - ranges[s][0] for s in mine), f"score (rank {rank}/{world_size})",
                       enabled=progress and rank == 0, unit="img")
        failure = _score_shards(model, dataset, work_dir, ranges, mine, bar, score_options)
        _wait_for_every_shard(work_dir, ranges, failure, group)
        return _merge_on_ranks(work_dir, rank == 0 or all_ranks, len(done), world_size, group)


def _open_work_dir(work_dir: str, manifest: dict[str, Any], rank: int, group) -> list[int]:
    """Rank 0 starts or resumes the work directory; every rank learns which shards are
    done there, and must see the directory (several nodes need a shared file system)."""
    outcome: Any = None
    if rank == 0:
        try:
            outcome = ("ok", _prepare_work_dir(work_dir, manifest))
        except Exception as error:  # noqa: BLE001 -- raised on every rank below
            outcome = ("error", _shareable(error, "preparing the work directory on rank 0"))
    status, payload = _broadcast(outcome, group)
    if status == "error":
        raise payload
    visible = _all_gather(os.path.isfile(os.path.join(work_dir, MANIFEST)), group)
    if not all(visible):
        blind = [r for r, seen in enumerate(visible) if not seen]
        raise ValueError(
            f"the work directory {work_dir!r} is not visible from rank(s) {_list(blind)}: on several nodes, "
            "sharded scoring needs a directory on a file system every node shares"
        )
    return payload


def _score_shards(model: nn.Module, dataset, work_dir: str, ranges: list[tuple[int, int]], mine: list[int],
                  bar: Progress, score_options: dict[str, Any]) -> Exception | None:
    """Scores and writes this rank's shards ``mine``; returns the error that stopped it, if
    one did, so that it is reported to the other ranks instead of leaving them waiting."""
    try:
        for shard in mine:
            start, stop = ranges[shard]
            shard_scores = score(model, dataset, start=start, stop=stop, **score_options)
            meta = dict(shard_scores.meta, shard={"index": shard, "start": start, "stop": stop})
            shard_scores.replace(meta=meta).save(shard_path(work_dir, shard))
            bar.update(stop - start)
    except Exception as error:  # noqa: BLE001 -- reported to every rank, then re-raised
        return error
    finally:
        bar.close()
    return None


def _wait_for_every_shard(work_dir: str, ranges: list[tuple[int, int]], failure: Exception | None, group) -> None:
    """Waits for every rank (a rank that died breaks this collective), then refuses to go
    on unless every shard is on disk and every rank can still take part in the merge."""
    try:
        statuses = _all_gather(None if failure is None else f"{type(failure).__name__}: {failure}", group)
        cause = "; ".join(f"rank {r} failed: {message}" for r, message in enumerate(statuses) if message)
    except RuntimeError as error:
        cause = (f"a rank stopped before finishing (its process died or lost its connection: "
                 f"{' '.join(str(error).split())})")
    missing = [s for s in range(len(ranges)) if not os.path.isfile(shard_path(work_dir, s))]
    if missing:
        raise _incomplete(work_dir, ranges, missing, cause or "the shard files are not in the work directory") \
            from failure
    if cause:  # every shard is on disk, but the ranks can no longer agree on the merge
        raise RuntimeError(f"every shard of {work_dir} is written, but {cause}; run the same job again to merge "
                           "them") from failure


def _merge_on_ranks(work_dir: str, merge_here: bool, resumed: int, world_size: int, group) -> Scores | None:
    """The merged scores where ``merge_here``, else None; a merge failure on any rank is
    raised on every rank."""
    merged, merge_error = None, None
    if merge_here:
        try:
            merged = merge_shards(work_dir, resumed=resumed, world_size=world_size)
        except Exception as error:  # noqa: BLE001 -- re-raised here, reported to the other ranks
            merge_error = error
    errors = _all_gather(None if merge_error is None else str(merge_error), group)
    if merge_error is not None:
        raise merge_error
    if any(errors):
        first = next(r for r, message in enumerate(errors) if message)
        raise ValueError(f"merging the shards failed on rank {first}: {errors[first]}")
    return merged


def merge_shards(work_dir: str | os.PathLike, *, resumed: int | None = None,
                 world_size: int | None = None) -> Scores:
    """The scores of a complete work directory of :func:`score_sharded`, in index order.

    Checks that every shard is there, intact (checksum) and belongs to the manifest's
    model, dataset and index range. ``resumed`` and ``world_size`` are recorded in the
    merged scores' ``meta["scoring"]``.

    Raises:
        IncompleteScoresError: shards are missing.
        ValueError: no manifest, or a shard file that is corrupt or from another run.
    """
    work_dir = os.fspath(work_dir)
    manifest = _read_manifest(work_dir)
    if manifest is None:
        raise ValueError(f"{work_dir!r} is not a sharded scoring work directory (no {MANIFEST})")
    n, ranges = manifest["n"], shard_ranges(manifest["n"], manifest["shard_size"])
    missing = [s for s in range(len(ranges)) if not os.path.isfile(shard_path(work_dir, s))]
    if missing:
        raise _incomplete(work_dir, ranges, missing, "the work directory does not hold every shard")

    entropy = torch.empty(n, dtype=torch.float32)
    log10_entropy = torch.empty(n, dtype=torch.float32)
    labels = torch.empty(n, dtype=torch.int64)
    predictions = torch.empty(n, dtype=torch.int64)
    features = None
    feature_layer = None
    for shard, (start, stop) in enumerate(ranges):
        path = shard_path(work_dir, shard)
        try:
            part = Scores.load(path)
        except ValueError as error:
            raise ValueError(f"{error}; delete it and run the scoring again to rescore shard {shard}") from None
        _check_shard(path, part, shard, start, stop, manifest)
        entropy[start:stop] = part.entropy
        log10_entropy[start:stop] = part.log10_entropy
        labels[start:stop] = part.labels
        predictions[start:stop] = part.predictions
        if manifest["scoring"]["features"]:
            if features is None:
                features = torch.empty(n, part.features.shape[1], dtype=part.features.dtype)
            features[start:stop] = part.features
            feature_layer = part.meta["scoring"]["feature_layer"]

    scoring = dict(manifest["scoring"], feature_layer=feature_layer,
                   shards={"count": len(ranges), "size": manifest["shard_size"], "resumed": resumed})
    del scoring["features"]
    if world_size is not None:
        scoring["world_size"] = world_size
    meta = {"model": manifest["model"], "dataset": manifest["dataset"], "scoring": scoring}
    return Scores(entropy, log10_entropy, labels, meta=meta, predictions=predictions, features=features)


def remove_shards(work_dir: str | os.PathLike) -> None:
    """Deletes a work directory of :func:`score_sharded`: its manifest, shard files and
    leftover temporaries, then the directory itself if nothing else is in it."""
    work_dir = os.fspath(work_dir)
    if not os.path.isdir(work_dir):
        return
    for name in os.listdir(work_dir):
        if name == MANIFEST or _SHARD_NAME.fullmatch(name) or _STALE_TEMPORARY.fullmatch(name):
            os.unlink(os.path.join(work_dir, name))
    if not os.listdir(work_dir):
        os.rmdir(work_dir)


def select_once(scores: Scores | Any | None, *, src: int = 0,
                timeout: float | datetime.timedelta = DEFAULT_TIMEOUT, **select_kwargs: Any) -> ProxySet:
    """:func:`proxyfast.select` computed on rank ``src`` only and broadcast: every rank
    returns the same proxy (indices on the CPU), whatever the world size.

    ``scores`` is needed on rank ``src`` only (other ranks may pass None, e.g. what
    :func:`score_sharded` returns there); ``select_kwargs`` are :func:`proxyfast.select`'s
    (``k`` or ``fraction``, ``method``, ``seed``, ...). An error on rank ``src`` is
    raised on every rank. Outside ``torch.distributed`` this is :func:`proxyfast.select`.
    """
    rank, world_size = distributed_rank()
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < world_size:
        raise ValueError(f"src must be a rank in [0, {world_size}), got {src!r}")
    if world_size == 1:
        return select(scores, **select_kwargs)
    with _control_group(world_size, _as_timedelta(timeout)) as group:
        outcome = None
        if rank == src:
            try:
                if scores is None:
                    raise ValueError(f"scores must be given on rank {src}, which selects the proxy")
                outcome = ("ok", _portable(select(scores, **select_kwargs)))
            except Exception as error:  # noqa: BLE001 -- raised on every rank below
                outcome = ("error", _shareable(error, f"selecting on rank {src}"))
        status, payload = _broadcast(outcome, group, src)
    if status == "error":
        raise payload
    return payload


# Coordination


@contextmanager
def _control_group(world_size: int, timeout: datetime.timedelta):
    """A gloo group of all ranks for the small coordination messages (None in one process)."""
    if world_size == 1:
        yield None
        return
    group = dist.new_group(backend="gloo", timeout=timeout)
    try:
        yield group
    finally:
        dist.destroy_process_group(group)


def _all_gather(value: Any, group) -> list[Any]:
    if group is None:
        return [value]
    values = [None] * dist.get_world_size(group)
    dist.all_gather_object(values, value, group=group)
    return values


def _broadcast(value: Any, group, src: int = 0) -> Any:
    if group is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src, group=group)
    return box[0]


def _as_timedelta(timeout: float | datetime.timedelta) -> datetime.timedelta:
    if isinstance(timeout, datetime.timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        seconds = float(timeout)
    else:
        raise TypeError(f"timeout must be a number of seconds or a datetime.timedelta, got {type(timeout).__name__}")
    if not seconds > 0:
        raise ValueError(f"timeout must be positive, got {seconds} s")
    return datetime.timedelta(seconds=seconds)


def _shareable(error: Exception, doing: str) -> Exception:
    """``error`` itself when it is one of the plain types every rank can rebuild, else a
    RuntimeError that says what failed."""
    if type(error) in (ValueError, TypeError) or isinstance(error, OSError):
        return error
    return RuntimeError(f"{doing} failed: {type(error).__name__}: {error}")


def _list(values: list[int]) -> str:
    return ", ".join(map(str, values))


# The work directory


def _identity(manifest: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for shards to belong together (the manifest less its labels)."""
    return {key: value for key, value in manifest.items() if key not in ("format", "version")}


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    found = []
    for key in sorted(set(a) | set(b)):
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            found += [f"{key}.{inner}" for inner in _differences(a[key], b[key])]
        elif a.get(key) != b.get(key):
            found.append(key)
    return found


def _check_same_run(identities: list[dict[str, Any]]) -> None:
    for rank, identity in enumerate(identities[1:], start=1):
        differences = _differences(identities[0], identity)
        if differences:
            raise ValueError(
                f"rank {rank} is not scoring what rank 0 is (differs in {', '.join(differences)}): "
                "every rank needs the same model weights, dataset and settings"
            )


def _read_manifest(work_dir: str) -> dict[str, Any] | None:
    path = os.path.join(work_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as file:
            manifest = json.load(file)
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path}: not a readable sharded scoring manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a sharded scoring manifest")
    if manifest.get("version", 0) > MANIFEST_VERSION:
        raise ValueError(f"{path}: written by a newer proxyfast (manifest version {manifest['version']})")
    return manifest


def _prepare_work_dir(work_dir: str, manifest: dict[str, Any]) -> list[int]:
    """Creates the work directory or checks that it belongs to this run; returns the
    shards already done. Runs on rank 0 before any rank writes a shard."""
    os.makedirs(work_dir, exist_ok=True)
    existing = _read_manifest(work_dir)
    if existing is None:
        stray = sorted(name for name in os.listdir(work_dir) if _SHARD_NAME.fullmatch(name))
        if stray:
            raise ValueError(f"{work_dir!r} holds shard files but no {MANIFEST}: use an empty work directory")
        record = dict(manifest, proxyfast_version=__version__,
                      created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        with atomic_write(os.path.join(work_dir, MANIFEST)) as file:
            file.write(json.dumps(record, indent=1, allow_nan=False).encode("utf-8"))
        return []
    differences = _differences(_identity({k: existing.get(k) for k in manifest}), _identity(manifest))
    if differences:
        raise ValueError(
            f"the work directory {work_dir!r} holds shards of another scoring run (differs in "
            f"{', '.join(differences)}): pass another work directory, or delete this one to start over"
        )
    for name in os.listdir(work_dir):
        if _STALE_TEMPORARY.fullmatch(name):  # a shard whose writer was killed; it is rescored
            os.unlink(os.path.join(work_dir, name))
    return [s for s in range(manifest["num_shards"]) if os.path.isfile(shard_path(work_dir, s))]


def _check_shard(path: str, part: Scores, shard: int, start: int, stop: int, manifest: dict[str, Any]) -> None:
    info = part.meta.get("shard") or {}
    problems = []
    if (info.get("index"), info.get("start"), info.get("stop")) != (shard, start, stop) or len(part) != stop - start:
        problems.append(f"it does not hold examples {start}..{stop - 1}")
    if (part.meta.get("model") or {}).get("sha256") != manifest["model"]["sha256"]:
        problems.append("another model computed it")
    if (part.meta.get("dataset") or {}).get("fingerprint") != manifest["dataset"]["fingerprint"]:
        problems.append("it was computed on another dataset")
    if part.labels is None or part.predictions is None:
        problems.append("it lacks labels or predictions")
    if manifest["scoring"]["features"] and part.features is None:
        problems.append("it lacks the features")
    if problems:
        raise ValueError(f"{path}: not shard {shard} of this run ({'; '.join(problems)}); "
                         "delete it and run the scoring again")


def _incomplete(work_dir: str, ranges: list[tuple[int, int]], missing: list[int], cause: str) -> IncompleteScoresError:
    shown = ", ".join(f"{s} (examples {ranges[s][0]}..{ranges[s][1] - 1})" for s in missing[:10])
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    done = len(ranges) - len(missing)
    return IncompleteScoresError(
        f"scoring is incomplete: {len(missing)} of {len(ranges)} shards are missing: {shown}{more}. Cause: {cause}. "
        f"The {done} completed shards are kept in {work_dir}; run the same job again to score only the missing ones.",
        missing, work_dir,
    )


def _portable(proxy: ProxySet) -> ProxySet:
    """The proxy with its indices on the CPU and without the scores it came from (their
    fingerprint is kept), so that it pickles small."""
    return ProxySet(proxy.indices.cpu(), n=proxy.n, method=proxy.method, params=proxy.params,
                    histogram=proxy.histogram, selected_per_bin=proxy.selected_per_bin,
                    fingerprint=proxy.fingerprint, dataset_fingerprint=proxy.dataset_fingerprint,
                    created=proxy.created,
                    proxyfast_version=proxy.proxyfast_version)
