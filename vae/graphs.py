"""A training step's forward and backward replayed from CUDA graphs (`TrainConfig.cuda_graphs`).

A small VAE's step is a chain of tiny kernels, each launched from Python. Captured once with
`torch.cuda.make_graphed_callables`, the loss and its gradients are two graph launches a step.
Batches shaped like the captured one replay the graphs; any other (an epoch's last, partial batch)
runs the same function eagerly. The optimizer (fused Adam: a few kernels), the scheduler and the
batch's gather stay outside the graphs.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from vae.errors import UsageError


def check(cuda_graphs: bool, device: str) -> None:
    """Refuse CUDA graphs on a device that has none, before anything is trained."""
    if cuda_graphs and torch.device(device).type != "cuda":
        raise UsageError(f"cuda_graphs needs a CUDA device but this training runs on {device}")


class Step:
    """`loss(*args)`, replayed from CUDA graphs when `capture` and the last argument (the one that
    carries the batch) has the shape it has in `sample_args`; eager otherwise. `loss` is a module
    (its parameters get gradients) or a function whose arguments hold every tensor needing one."""

    def __init__(self, loss: nn.Module | Callable[..., torch.Tensor], sample_args: tuple[Any, ...], *,
                 capture: bool) -> None:
        self._eager = loss.forward if isinstance(loss, nn.Module) else loss  # before capture replaces forward
        self._graphed = None
        self._shape = sample_args[-1].shape
        if capture:
            # the warm-up and capture draw noise too: the device's stream goes on from where it was, so
            # a resumed run (its stream restored from the checkpoint) continues as an uninterrupted one
            rng = torch.cuda.get_rng_state()
            self._graphed = torch.cuda.make_graphed_callables(loss, sample_args)
            torch.cuda.set_rng_state(rng)

    def __call__(self, *args: Any) -> torch.Tensor:
        if self._graphed is not None and args[-1].shape == self._shape:
            return self._graphed(*args)
        return self._eager(*args)
