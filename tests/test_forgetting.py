"""Forgetting events: counts on scripted prediction sequences, the ``forgetting`` method."""

import math

import numpy as np
import pytest
import torch

import proxyfast
from proxyfast.forgetting import Forgetting, ForgettingTracker
from proxyfast.scoring import Scores


def run_script(script):
    """script[t][i]: whether example i was correct at its t-th presentation (None: not presented)."""
    n = len(script[0])
    tracker = ForgettingTracker(n)
    for step in script:
        indices = [i for i, c in enumerate(step) if c is not None]
        tracker.update(torch.tensor(indices), torch.tensor([step[i] for i in indices]))
    return tracker.result()


def test_counts_on_a_scripted_sequence():
    T, F, _ = True, False, None
    script = [
        # ex0 ex1 ex2 ex3 ex4
        [F, T, T, F, F],
        [T, F, T, F, _],
        [F, T, T, F, T],
        [T, F, _, F, F],
        [F, F, F, F, T],
    ]
    result = run_script(script)
    # ex0: T->F twice; ex1: T->F at steps 1 and 3; ex2: T,T,-,F (the skipped step is no
    # presentation, so T->F once); ex3 never learned; ex4: F,-,T,F,T -> once.
    assert result.events.tolist() == [2, 2, 1, 0, 1]
    assert result.learned.tolist() == [True, True, True, False, True]
    assert result.presentations.tolist() == [5, 5, 4, 5, 4]
    counts = result.counts
    assert counts.dtype == torch.float32 and counts.tolist() == [2, 2, 1, math.inf, 1]
    assert result.unforgettable.tolist() == [False] * 5


def test_unforgettable_and_learned_late():
    result = run_script([[False, True], [False, True], [True, True]])
    assert result.events.tolist() == [0, 0] and result.unforgettable.tolist() == [True, True]


def test_tracker_checks_and_state_round_trip():
    tracker = ForgettingTracker(4)
    with pytest.raises(ValueError, match="outside"):
        tracker.update(torch.tensor([4]), torch.tensor([True]))
    with pytest.raises(ValueError, match="1-D of one length"):
        tracker.update(torch.tensor([0, 1]), torch.tensor([True]))
    with pytest.raises(ValueError, match="n must be at least 1, got 0"):
        ForgettingTracker(0)
    tracker.update(torch.tensor([0, 2]), torch.tensor([True, True]))
    copy = ForgettingTracker(4)
    copy.load_state_dict(tracker.state_dict())
    tracker.update(torch.tensor([0]), torch.tensor([False]))
    copy.update(torch.tensor([0]), torch.tensor([False]))
    assert torch.equal(copy.result().events, tracker.result().events) and int(copy.events[0]) == 1


def scores_with_counts(counts):
    n = len(counts)
    return Scores.from_entropy(np.linspace(0.1, 1.0, n)).replace(
        forgetting_counts=torch.tensor(counts, dtype=torch.float32))


def test_select_forgetting_ranks_never_learned_first():
    counts = [0, 3, math.inf, 1, 5, 0, math.inf, 2]
    proxy = proxyfast.select(scores_with_counts(counts), k=4, method="forgetting")
    assert sorted(proxy.indices.tolist()) == [1, 2, 4, 6]  # inf, inf, 5, 3


def test_select_forgetting_breaks_ties_by_seed():
    counts = [1.0] * 200 + [7.0] * 3
    scores = scores_with_counts(counts)
    picks = {seed: sorted(proxyfast.select(scores, k=10, method="forgetting", seed=seed).indices.tolist())
             for seed in range(4)}
    for seed, chosen in picks.items():
        assert chosen[-3:] == [200, 201, 202]  # the most forgotten always
        assert chosen == sorted(proxyfast.select(scores, k=10, method="forgetting", seed=seed).indices.tolist())
    assert len({tuple(p) for p in picks.values()}) > 1  # the 7 tied picks depend on the seed


def test_select_forgetting_without_counts_is_a_clear_error():
    with pytest.raises(ValueError) as error:
        proxyfast.select(Scores.from_entropy([0.5, 0.2, 0.1]), k=1, method="forgetting")
    # The whole message: it is the user's only instruction for what to do.
    assert str(error.value) == (
        "method 'forgetting' needs scores with forgetting counts: compute them with "
        "proxyfast.forgetting(model, dataset) and attach them with "
        "scores.replace(forgetting_counts=result.counts)"
    )


def test_forgetting_trains_from_scratch_and_counts(rng):
    from proxyfast.data import ImageArrayDataset
    from proxyfast.models import resnet20

    images = rng.integers(0, 256, size=(40, 8, 8, 1), dtype=np.uint8)
    dataset = ImageArrayDataset(images, rng.integers(0, 3, size=40), "tiny")
    torch.manual_seed(0)
    result = proxyfast.forgetting(resnet20(3, 1, width=4), dataset, epochs=3, batch_size=16, progress=False, log=None)
    assert isinstance(result, Forgetting)
    assert result.presentations.tolist() == [3] * 40  # every example once per epoch
    assert bool((result.events <= 1).all())  # three presentations allow one forgetting at most


class ScriptedModel(torch.nn.Module):
    """Predicts each example right or wrong as a script says, presentation by presentation.

    The input image's pixels hold the example's index; script[i, t] is whether example i
    is predicted right at its t-th forward pass in training mode. The parameter only gives
    the optimiser something to step (its gradient is zero)."""

    def __init__(self, script: np.ndarray, labels: np.ndarray, classes: int):
        super().__init__()
        self.script = torch.from_numpy(script)
        self.labels = torch.from_numpy(labels)
        self.classes = classes
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.register_buffer("passes", torch.zeros(len(labels), dtype=torch.int64), persistent=False)

    def forward(self, x):
        index = torch.round(x[:, 0, 0, 0].float() * 255).to(torch.int64)
        if self.training:
            correct = self.script[index, self.passes[index]]
            self.passes[index] += 1
        else:
            correct = torch.ones(len(index), dtype=torch.bool)
        label = self.labels[index]
        predicted = torch.where(correct, label, (label + 1) % self.classes)
        return torch.nn.functional.one_hot(predicted, self.classes).float() * 10.0 + self.anchor * 0.0


def events_from_script(script):
    """Forgetting events recomputed in plain Python from per-presentation correctness."""
    events, learned = [], []
    for row in script.tolist():
        events.append(sum(1 for before, now in zip(row, row[1:]) if before and not now))
        learned.append(any(row))
    return events, learned


def test_forgetting_events_equal_a_recount_of_the_scripted_predictions(rng):
    from proxyfast.data import ImageArrayDataset
    from proxyfast.forgetting import forgetting

    n, epochs, classes = 48, 7, 3
    script = rng.random((n, epochs)) < rng.uniform(0.1, 0.9, size=(n, 1))
    script[:4] = False  # never learned
    script[4:8] = True  # learned at once, never forgotten
    script[8] = [True, False] * 3 + [True]  # forgotten three times
    labels = rng.integers(0, classes, size=n)
    images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 4, 4, 1)).copy()
    dataset = ImageArrayDataset(images, labels, "scripted")
    model = ScriptedModel(script, labels, classes)
    result = forgetting(model, dataset, epochs=epochs, batch_size=8, augment=False, amp=False,
                                  seed=int(rng.integers(2**31)), progress=False, log=None)
    assert model.passes.tolist() == [epochs] * n  # the script was played to the end
    events, learned = events_from_script(script)
    assert result.events.tolist() == events
    assert result.learned.tolist() == learned
    assert result.presentations.tolist() == [epochs] * n
    assert result.counts.tolist() == [e if ok else math.inf for e, ok in zip(events, learned)]
    assert max(events) >= 3


def test_tracker_state_of_another_size_is_refused_naming_the_field():
    from proxyfast.forgetting import ForgettingTracker as Tracker

    state = Tracker(3).state_dict()
    with pytest.raises(ValueError, match=r"^forgetting state 'last_correct' has shape \(3,\), expected \(4,\)$"):
        Tracker(4).load_state_dict(state)
