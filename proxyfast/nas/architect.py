"""The architecture step of the bi-level DARTS search (Liu et al., ICLR 2019, section 2.3).

The weights ``w`` minimise the training loss, the architecture parameters ``a`` the
validation loss at the weights that training would reach. DARTS approximates those by
one weight step, ``w' = w - xi * grad_w L_train(w, a)`` (with the weight optimiser's
momentum and weight decay), and follows

    d/da L_val(w', a) = grad_a L_val(w', a) - xi * grad2_{a,w} L_train(w, a) . grad_w' L_val(w', a)

(second order), the Hessian-vector product by central finite differences, or with
``xi = 0`` just ``grad_a L_val(w, a)`` (first order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import distributed as dist
from torch import nn
from torch.func import functional_call

__all__ = ["Architect"]

Batch = Sequence[torch.Tensor]


class Architect:
    """Updates a supernet's architecture parameters with Adam.

    Args:
        model: the supernet, or ``nn.DataParallel``/``DistributedDataParallel`` around
            it. The architecture step runs on the wrapped module itself (the unrolled
            weights cannot be swapped into a replicating wrapper); under
            ``torch.distributed`` its gradients (and, in the second order, the
            unrolled step's training and validation gradients) are averaged over the
            ranks, so that every rank takes the global batch's step.
        order: 1 (first order) or 2 (second order, unrolled).
        lr, betas, weight_decay: Adam's settings; the defaults are the paper's.
        network_momentum, network_weight_decay: the weight optimiser's SGD settings,
            used for the unrolled step (second order).
        criterion: the loss, cross entropy by default.
        fd_radius: the finite-difference step of the Hessian-vector product, as a
            length in weight space (0.01 in DARTS).
    """

    def __init__(self, model: nn.Module, order: int = 1, lr: float = 3e-4,
                 betas: tuple[float, float] = (0.5, 0.999), weight_decay: float = 1e-3,
                 network_momentum: float = 0.9, network_weight_decay: float = 3e-4,
                 criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 fd_radius: float = 1e-2) -> None:
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (first order) or 2 (second order), got {order!r}")
        self.network = getattr(model, "module", model)
        self.order = order
        self.network_momentum = network_momentum
        self.network_weight_decay = network_weight_decay
        self.fd_radius = fd_radius
        self.criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
        self.arch_params = list(self.network.arch_parameters())
        arch = {id(p) for p in self.arch_params}
        named = [(name, p) for name, p in self.network.named_parameters() if id(p) not in arch]
        self.weight_names = [name for name, _ in named]
        self.weights = [p for _, p in named]
        self.optimizer = torch.optim.Adam(self.arch_params, lr=lr, betas=betas, weight_decay=weight_decay)

    def _loss(self, batch: Batch, weights: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        inputs, targets = batch
        if weights is None:
            logits = self.network(inputs)
        else:
            logits = functional_call(self.network, dict(zip(self.weight_names, weights)), (inputs,), strict=False)
        return self.criterion(logits, targets)

    def step(self, train_batch: Batch, val_batch: Batch, lr: float | None = None,
             network_optimizer: torch.optim.Optimizer | None = None) -> torch.Tensor:
        """One Adam step on the architecture parameters; returns the validation loss.

        ``lr`` is the weight optimiser's current learning rate (``xi``), and
        ``network_optimizer`` the weight optimiser (its momentum enters the unrolled
        step); the second order needs ``lr``, the first order ignores both.
        """
        if self.order == 2 and lr is None:
            raise ValueError("the second-order step needs lr, the weight optimiser's current learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        if self.order == 1:
            loss = self._loss(val_batch)
            grads = _grads(loss, self.arch_params)
        else:
            loss, grads = self.unrolled_gradient(train_batch, val_batch, lr, network_optimizer)
        for p, g in zip(self.arch_params, _average_across_ranks(grads)):
            p.grad = g
        self.optimizer.step()
        return loss.detach()

    def unrolled_weights(self, train_batch: Batch, lr: float,
                         network_optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
        """``w' = w - lr * (momentum * buffer + grad_w L_train + weight_decay * w)``, the
        weight optimiser's SGD step, as new leaf tensors; changes no parameter."""
        train_grads = _average_across_ranks(_grads(self._loss(train_batch), self.weights))
        unrolled = []
        for w, g in zip(self.weights, train_grads):
            step = g + self.network_weight_decay * w.detach()
            buffer = None if network_optimizer is None else network_optimizer.state.get(w, {}).get("momentum_buffer")
            if buffer is not None:
                step = step + self.network_momentum * buffer
            unrolled.append((w.detach() - lr * step).requires_grad_())
        return unrolled

    def unrolled_gradient(self, train_batch: Batch, val_batch: Batch, lr: float,
                          network_optimizer: torch.optim.Optimizer | None = None,
                          ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The second-order gradient of the validation loss after one weight step of
        size ``lr``, and that loss; changes no parameter."""
        unrolled = self.unrolled_weights(train_batch, lr, network_optimizer)
        val_loss = self._loss(val_batch, unrolled)
        grads = _average_across_ranks(_grads(val_loss, [*self.arch_params, *unrolled]))
        arch_grads, vector = grads[: len(self.arch_params)], grads[len(self.arch_params):]
        hessian_vector = self._hessian_vector_product(vector, train_batch)
        return val_loss.detach(), [g - lr * h for g, h in zip(arch_grads, hessian_vector)]

    def _hessian_vector_product(self, vector: Sequence[torch.Tensor], train_batch: Batch) -> list[torch.Tensor]:
        """``grad2_{a,w} L_train . vector`` by central differences of ``grad_a L_train``
        at ``w +- eps * vector``, with ``eps = fd_radius / |vector|`` (DARTS, equation 8)."""
        norm = torch.sqrt(sum((v.double() ** 2).sum() for v in vector))
        if norm == 0:
            return [torch.zeros_like(p) for p in self.arch_params]
        eps = (self.fd_radius / norm).item()
        plus = [w.detach() + eps * v for w, v in zip(self.weights, vector)]
        minus = [w.detach() - eps * v for w, v in zip(self.weights, vector)]
        grads_plus = _grads(self._loss(train_batch, plus), self.arch_params)
        grads_minus = _grads(self._loss(train_batch, minus), self.arch_params)
        return [(gp - gm) / (2 * eps) for gp, gm in zip(grads_plus, grads_minus)]

    def state_dict(self) -> dict:
        """The Adam state, for checkpoints."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def _average_across_ranks(grads: list[torch.Tensor]) -> list[torch.Tensor]:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return grads
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    return [chunk.view_as(g) for chunk, g in zip(flat.split([g.numel() for g in grads]), grads)]


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    # Parameters the loss does not reach (an unused op's) get zeros rather than None.
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
