"""k replicate seeds of one `TrainConfig` trained together as one stacked model.

The members' parameters are stacked along a new first dimension (`torch.func.stack_module_state`)
and one step runs all of them with `torch.func.functional_call` under `vmap`: one kernel per
layer for all k members instead of k chains of small kernels. Each member is what the solo run
of its seed (`vae.training.train`) is: its initialisation (`torch.manual_seed(seed)`, then the
model), its data order (the (seed, epoch) shuffle), its noise stream (the CPU generator's state
after its initialisation, drawn outside vmap), its Adam state (Adam is elementwise: one Adam over
the stacked parameters is k independent Adams), its schedule, its `EpochResult` per epoch.
A member whose loss stops being finite is marked diverged at that epoch and leaves the results;
its NaNs stay in its own slice, so the others go on unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from vae.config import TrainConfig
from vae.data import IMAGE_SHAPE, Splits, to_unit
from vae.errors import UsageError
from vae.graphs import Step
from vae.metrics import vae_loss
from vae.model import ConvVAE
from vae.training import EpochResult, evaluate, prepare


class _WithNoise(nn.Module):
    """The model's training pass with its noise given (randomness stays outside vmap)."""

    def __init__(self, model: ConvVAE) -> None:
        super().__init__()
        self.vae = model

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.vae.encode(x)
        return self.vae.decode_logits(mu + torch.exp(0.5 * logvar) * eps), mu, logvar


def check_members(configs: list[TrainConfig]) -> None:
    """Members must differ in their seed alone (one shape, one recipe)."""
    if not configs:
        raise UsageError("a fused group needs at least one member")
    shared = {dataclasses.replace(c, seed=0) for c in configs}
    if len(shared) != 1:
        raise UsageError("the members of a fused group must differ in their seed alone")
    if len({c.seed for c in configs}) != len(configs):
        raise UsageError(f"the members of a fused group need distinct seeds but got {[c.seed for c in configs]}")


@dataclass
class FusedState:
    """Everything needed to continue a fused group: stacked weights, optimizer, each member's
    noise stream and history, and which members diverged."""

    configs: list[TrainConfig]
    template: _WithNoise  # the module functional_call runs (its own weights are not used)
    params: dict[str, torch.Tensor]  # name -> (k, ...) stacked leaf tensors
    optimizer: torch.optim.Optimizer
    generators: list[torch.Generator]  # each member's noise stream
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    histories: list[list[EpochResult]] = field(default_factory=list)
    diverged: list[int | None] = field(default_factory=list)  # the epoch a member diverged in, or None

    @property
    def k(self) -> int:
        return len(self.configs)

    @property
    def epoch(self) -> int:
        return max(len(h) + (1 if d else 0) for h, d in zip(self.histories, self.diverged, strict=True))

    def live(self) -> list[int]:
        return [i for i, d in enumerate(self.diverged) if d is None]

    @classmethod
    def fresh(cls, configs: list[TrainConfig], n_train: int) -> "FusedState":
        check_members(configs)
        config = configs[0]
        models, generators = [], []
        for member in configs:
            torch.manual_seed(member.seed)  # as the solo run: the seed, then the model
            models.append(ConvVAE(member.model))
            generator = torch.Generator()
            generator.set_state(torch.get_rng_state())  # the solo run's noise continues from here
            generators.append(generator)
        params, _ = stack_module_state([_WithNoise(m) for m in models])
        device = torch.device(config.device)
        params = {name: p.detach().to(device).requires_grad_() for name, p in params.items()}
        template = _WithNoise(ConvVAE(config.model)).to("meta")
        optimizer = torch.optim.Adam(list(params.values()), lr=config.lr, fused=True)
        scheduler = None
        if config.lr_schedule == "onecycle":
            steps = config.epochs * math.ceil(n_train / config.batch_size)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps)
        k = len(configs)
        return cls(
            list(configs), template, params, optimizer, generators, scheduler, [[] for _ in range(k)], [None] * k
        )

    def member(self, i: int) -> ConvVAE:
        """Member `i` as a `ConvVAE` of its own (a copy of its weights)."""
        model = ConvVAE(self.configs[i].model).to(self.configs[i].device)
        model.load_state_dict({name.removeprefix("vae."): p[i].detach().clone() for name, p in self.params.items()})
        return model

    def to_dict(self) -> dict[str, Any]:
        """Tensors, numbers, strings, lists and dicts only (loads with weights_only=True)."""
        out = {
            "params": {name: p.detach().cpu() for name, p in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
            "generators": [g.get_state() for g in self.generators],
            "histories": [[dataclasses.asdict(r) for r in h] for h in self.histories],
            "diverged": list(self.diverged),
        }
        if self.scheduler is not None:
            out["scheduler"] = self.scheduler.state_dict()
        return out

    @classmethod
    def from_dict(cls, configs: list[TrainConfig], values: dict[str, Any], *, n_train: int) -> "FusedState":
        state = cls.fresh(configs, n_train)
        with torch.no_grad():
            for name, p in state.params.items():
                p.copy_(values["params"][name])
        state.optimizer.load_state_dict(values["optimizer"])
        if state.scheduler is not None and "scheduler" in values:
            state.scheduler.load_state_dict(values["scheduler"])
        for generator, saved in zip(state.generators, values["generators"], strict=True):
            generator.set_state(saved)
        state.histories = [[EpochResult(**r) for r in h] for h in values["histories"]]
        state.diverged = list(values["diverged"])
        return state


def train_fused(
    configs: list[TrainConfig],
    splits: Splits,
    *,
    on_epoch: Callable[[int, EpochResult | None, FusedState], None] | None = None,
    state: FusedState | None = None,
    after_epoch: Callable[[FusedState], None] | None = None,
) -> FusedState:
    """Train every member until `epochs`, starting from `state` when given. After each epoch
    `on_epoch(i, result, state)` for each member still live, and `on_epoch(i, None, state)` once
    for a member that diverged in it; then `after_epoch(state)` once."""
    config = configs[0]
    train_x, val = prepare(config, splits)
    state = state if state is not None else FusedState.fresh(configs, len(splits.train))
    step = _step(state, train_x)
    while state.epoch < config.epochs:
        epoch = state.epoch
        started = time.perf_counter()
        losses = _train_epoch(state, train_x, epoch, step)
        trained = time.perf_counter()
        for i in state.live():
            val_loss, metrics = evaluate(state.member(i), val, beta=config.beta)
            if not (math.isfinite(losses[i]) and math.isfinite(val_loss)):
                state.diverged[i] = epoch + 1
                if on_epoch is not None:
                    on_epoch(i, None, state)
                continue
            result = EpochResult(
                epoch=epoch + 1,
                train_loss=losses[i],
                val_loss=val_loss,
                time_s=(time.perf_counter() - started) / state.k,
                fit_time_s=(trained - started) / state.k,
                **metrics,
            )
            state.histories[i].append(result)
            if on_epoch is not None:
                on_epoch(i, result, state)
        if after_epoch is not None:
            after_epoch(state)
        if not state.live():
            break
    return state


def _train_epoch(state: FusedState, images: torch.Tensor, epoch: int, step: Step) -> list[float]:
    """One epoch of every member; each member's mean loss per image."""
    config = state.configs[0]
    n = len(images)
    orders = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(c.seed * 100_003 + epoch))
                          for c in state.configs]).to(images.device)
    noise = _epoch_noise(state, n, images.device)
    total = torch.zeros(state.k, device=images.device)
    for start in range(0, n, config.batch_size):
        index = orders[:, start : start + config.batch_size]  # (k, b)
        losses = step(state.params, to_unit(images[index]), noise[:, start : start + config.batch_size])  # (k,)
        state.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # each member's gradient is its own loss's
        state.optimizer.step()
        if state.scheduler is not None:
            state.scheduler.step()
        total += losses.detach() * index.shape[1]
    return (total / n).tolist()


def _step(state: FusedState, images: torch.Tensor) -> Step:
    """Every member's loss of one batch (k, b, 1, 28, 28) with its noise (k, b, latent) -> (k,), under
    vmap; captured as CUDA graphs when the members' config asks for it."""
    config = state.configs[0]

    def member_loss(params, x, eps):
        logits, mu, logvar = functional_call(state.template, params, (x, eps))
        return vae_loss(logits, x, mu, logvar, config.beta)

    batch = min(config.batch_size, len(images))
    sample = (state.params, torch.zeros((state.k, batch, *IMAGE_SHAPE), device=images.device),
              torch.zeros((state.k, batch, config.model.latent_dim), device=images.device))
    return Step(vmap(member_loss), sample, capture=config.cuda_graphs and len(images) >= config.batch_size)


def _epoch_noise(state: FusedState, n: int, device: torch.device) -> torch.Tensor:
    """Each member's noise for an epoch's batches, (k, n, latent): the draws its solo run makes
    batch by batch, made up front so that a CUDA device gets them in one copy, not one a step."""
    size, latent = state.configs[0].batch_size, state.configs[0].model.latent_dim
    noise = torch.stack([torch.cat([torch.randn((min(size, n - start), latent), generator=g)
                                    for start in range(0, n, size)]) for g in state.generators])
    if device.type == "cuda":
        return noise.pin_memory().to(device, non_blocking=True)
    return noise
