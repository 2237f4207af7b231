"""Train one configuration from in-memory tensors, calling back after every epoch.

Batches are index slices of the tensors already in memory (no per-sample DataLoader or
PIL path). Runs are reproducible on CPU for a given seed, including across a resume:
each epoch's shuffle comes from (seed, epoch) and the noise RNG state is checkpointed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from vae.config import TrainConfig
from vae.data import IMAGE_SHAPE, Split, Splits, to_unit
from vae.graphs import Step, check
from vae.metrics import (
    ACTIVE_THRESHOLD,
    active_units,
    digit_metrics_from_mse,
    iw_nll_from_log_weights,
    kl_per_dim,
    log_normal,
    mse_per_image,
    reconstruction_nll,
    vae_loss,
)
from vae.model import ConvVAE

EVAL_BATCH_SIZE = 500  # images per evaluation chunk: bounds the activations a trial worker holds
_VAL_NOISE_SEED = 1234  # validation loss uses the same noise every epoch, so epochs compare


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: a deterministic failure, not worth a retry."""

    def __init__(self, message: str, *, epoch: int) -> None:
        super().__init__(message)
        self.epoch = epoch  # the epoch (1-based) in which it happened


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based count of completed epochs
    train_loss: float  # mean negative ELBO per image over the epoch's batches
    val_loss: float  # the same on the validation split
    mse_by_digit: list[float]
    psnr_by_digit: list[float]
    mse_mean: float
    psnr_mean: float
    time_s: float  # wall time of this epoch (training + validation)
    kl: float = math.nan  # mean KL(q(z|x) || N(0, I)) per validation image (NaN in older checkpoints)
    fit_time_s: float = math.nan  # the training part of time_s (no validation)
    # latent dimensions with Var_x(E_q[z_j|x]) > active_threshold on the validation split (NaN in older checkpoints)
    active_units: float = math.nan
    active_threshold: float = ACTIVE_THRESHOLD
    kl_by_dim: list[float] = field(default_factory=list)  # mean KL of each latent dimension per validation image
    mu_var_by_dim: list[float] = field(default_factory=list)  # Var_x(E_q[z_j|x]) of each latent dimension

    def flat(self) -> dict[str, float]:
        """Scalars only: `mse_digit_0..9`, `psnr_digit_0..9` instead of the per-digit lists (the
        per-dimension lists are left out)."""
        out: dict[str, float] = {k: v for k, v in asdict(self).items() if not isinstance(v, list)}
        for digit, (mse, psnr) in enumerate(zip(self.mse_by_digit, self.psnr_by_digit, strict=True)):
            out[f"mse_digit_{digit}"] = mse
            out[f"psnr_digit_{digit}"] = psnr
        return out


@dataclass
class TrainState:
    """Everything needed to continue a run: model, optimizer, history, noise RNG."""

    config: TrainConfig
    model: ConvVAE
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None  # stepped once per batch
    history: list[EpochResult] = field(default_factory=list)

    @property
    def epoch(self) -> int:
        return len(self.history)

    @classmethod
    def fresh(cls, config: TrainConfig, n_train: int) -> "TrainState":
        """A new model and optimizer; `n_train` (training images) sets the schedule's length."""
        torch.manual_seed(config.seed)
        model = ConvVAE(config.model).to(config.device)
        # fused: one kernel for the whole update (16% more images/s at batch 32 on one CPU core, bench/recipe.py)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
        scheduler = None
        if config.lr_schedule == "onecycle":
            steps = config.epochs * math.ceil(n_train / config.batch_size)
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps)
        return cls(config, model, optimizer, scheduler)

    def to_dict(self) -> dict[str, Any]:
        """Tensors, numbers, strings, lists and dicts only (loads with weights_only=True)."""
        out = {
            "optimizer": self.optimizer.state_dict(),
            "history": [asdict(r) for r in self.history],
            "rng": torch.get_rng_state(),
        }
        device = torch.device(self.config.device)
        if device.type == "cuda":
            # the training noise (the reparameterisation's draws) comes from the device's generator
            out["cuda_rng"] = torch.cuda.get_rng_state(device)
        if self.scheduler is not None:
            out["scheduler"] = self.scheduler.state_dict()
        return out

    @classmethod
    def from_dict(
        cls, config: TrainConfig, weights: dict[str, torch.Tensor], values: dict[str, Any], *, n_train: int
    ) -> "TrainState":
        state = cls.fresh(config, n_train)
        state.model.load_state_dict(weights)
        state.optimizer.load_state_dict(values["optimizer"])
        if state.scheduler is not None and "scheduler" in values:
            state.scheduler.load_state_dict(values["scheduler"])
        state.history = [EpochResult(**r) for r in values["history"]]
        torch.set_rng_state(values["rng"])
        device = torch.device(config.device)
        if device.type == "cuda" and "cuda_rng" in values:  # absent in checkpoints written on a CPU
            torch.cuda.set_rng_state(values["cuda_rng"], device)
        return state


def train(
    config: TrainConfig,
    splits: Splits,
    *,
    on_epoch: Callable[[EpochResult, TrainState], None] | None = None,
    state: TrainState | None = None,
) -> TrainState:
    """Train until `config.epochs` epochs are done, starting from `state` when given."""
    train_x, val = prepare(config, splits)
    state = state if state is not None else TrainState.fresh(config, len(splits.train))
    sample = torch.zeros((config.batch_size, *IMAGE_SHAPE), device=train_x.device)
    step = Step(_Loss(state.model, config.beta), (sample,), capture=config.cuda_graphs and len(train_x) >= len(sample))
    while state.epoch < config.epochs:
        started = time.perf_counter()
        # one shuffle stream per (seed, epoch): 100_003 is a prime above any epoch count, so no two
        # (seed, epoch) pairs of a run share a stream
        train_loss = _train_epoch(state, train_x, step, generator_seed=config.seed * 100_003 + state.epoch)
        trained = time.perf_counter()
        val_loss, metrics = evaluate(state.model, val, beta=config.beta)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise TrainingDiverged(
                f"loss is not finite at epoch {state.epoch + 1} (train {train_loss}, val {val_loss}); lr {config.lr} "
                "is likely too high",
                epoch=state.epoch + 1,
            )
        result = EpochResult(
            epoch=state.epoch + 1,
            train_loss=train_loss,
            val_loss=val_loss,
            time_s=time.perf_counter() - started,
            fit_time_s=trained - started,
            **metrics,
        )
        state.history.append(result)
        if on_epoch is not None:
            on_epoch(result, state)
    return state


def prepare(config: TrainConfig, splits: Splits) -> tuple[torch.Tensor, Split]:
    """The process set up for `config` (threads, deterministic algorithms), and the training
    pixels and the validation split on its device: uint8 (a no-op view on CPU); batches become
    float32 there. CUDA graphs off a CUDA device are refused here, before anything is trained."""
    check(config.cuda_graphs, config.device)
    torch.set_num_threads(config.threads)
    deterministic(config.deterministic, config.device)
    device = torch.device(config.device)
    return splits.train.pixels.to(device), Split(splits.val.pixels.to(device), splits.val.labels.to(device))


def deterministic(on: bool, device: str) -> None:
    """torch's deterministic algorithms on or off for this process; on CUDA, cuBLAS's fixed
    workspace too, which they require (set before cuBLAS starts: the first matrix product)."""
    if on and torch.device(device).type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.benchmark = False


class _Loss(torch.nn.Module):
    """The training loss of one batch, as one module (what `vae.graphs.Step` captures)."""

    def __init__(self, model: ConvVAE, beta: float) -> None:
        super().__init__()
        self.vae, self.beta = model, beta

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        logits, mu, logvar = self.vae(batch)
        return vae_loss(logits, batch, mu, logvar, self.beta)


def _train_epoch(state: TrainState, images: torch.Tensor, step: Step, *, generator_seed: int) -> float:
    model, optimizer, scheduler, config = state.model, state.optimizer, state.scheduler, state.config
    model.train()
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(generator_seed)).to(images.device)
    # the loss is summed on the device and read once per epoch: no host synchronisation per
    # batch (a NaN or inf carries through the sum, so divergence is still caught)
    total = torch.zeros((), device=images.device)
    for start in range(0, len(images), config.batch_size):
        batch = to_unit(images[order[start : start + config.batch_size]])
        loss = step(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.detach() * len(batch)
    return float(total) / len(images)


@torch.inference_mode()
def evaluate(model: ConvVAE, split: Split, *, beta: float) -> tuple[float, dict[str, Any]]:
    """(mean negative ELBO, per-digit metrics and the mean KL) on `split`; metrics decode the
    posterior mean."""
    model.eval()
    generator = torch.Generator(device=split.pixels.device).manual_seed(_VAL_NOISE_SEED)
    total = torch.zeros((), device=split.pixels.device)
    kl = torch.zeros(model.latent_dim, device=split.pixels.device)
    mse, means = [], []
    for start in range(0, len(split), EVAL_BATCH_SIZE):
        x = to_unit(split.pixels[start : start + EVAL_BATCH_SIZE])
        mu, logvar = model.encode(x)
        logits = model.decode_logits(ConvVAE.sample(mu, logvar, generator))
        total += vae_loss(logits, x, mu, logvar, beta) * len(x)
        kl += kl_per_dim(mu, logvar).sum(dim=0)
        mse.append(mse_per_image(model.decode(mu), x))
        means.append(mu)
    metrics = digit_metrics_from_mse(torch.cat(mse).cpu(), split.labels.cpu())
    mu_var = torch.cat(means).var(dim=0, correction=0).cpu()  # over the data, as Burda et al.
    kl_by_dim = (kl / len(split)).cpu()
    return float(total) / len(split), {
        **metrics,
        "kl": float(kl_by_dim.sum()),
        "active_units": active_units(mu_var),
        "active_threshold": ACTIVE_THRESHOLD,
        "kl_by_dim": kl_by_dim.tolist(),
        "mu_var_by_dim": mu_var.tolist(),
    }


IW_SEED = 4321  # the importance samples of `importance_weighted_nll`: a fixed stream, so it is repeatable
# images x samples decoded at once. It bounds the activations, not just the logits: at the paper
# widths a row holds ~70 KB through the decoder (64x7x7 and two 32x14x14 maps, the 784 logits and
# the loss's temporaries), so 4,096 rows peaked ~330 MB over the worker's floor and 512 peak ~25 MB
# (38 MB on an H200), and run faster on CPU (8.0 s against 13.3 s for k = 64 on 1,000 images);
# a trial worker's peak: bench/overhead.py --parts memory
_IW_ROWS = 512


@torch.inference_mode()
def importance_weighted_nll(model: ConvVAE, pixels: torch.Tensor, *, k: int, seed: int = IW_SEED) -> torch.Tensor:
    """The importance-weighted bound on −log p(x) in nats, with k draws from q(z|x) per image
    (Burda et al., 2015), for each image of `pixels` (uint8 or [0, 1], (N, 1, 28, 28)) -> (N,).
    k = 1 is the single-draw negative ELBO; the bound tightens toward −log p(x) as k grows.
    p(x|z) is the model's Bernoulli likelihood of the pixel intensities, as in the training loss.
    Repeatable: the draws come from a generator seeded with `seed`."""
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"k must be an integer >= 1 but got {k!r}")
    model.eval()
    generator = torch.Generator(device=pixels.device).manual_seed(seed)
    per_chunk = max(1, _IW_ROWS // k)
    out = []
    for start in range(0, len(pixels), per_chunk):
        chunk = pixels[start : start + per_chunk]
        x = to_unit(chunk) if chunk.dtype == torch.uint8 else chunk
        mu, logvar = model.encode(x)
        mu_k, logvar_k = mu.repeat_interleave(k, dim=0), logvar.repeat_interleave(k, dim=0)
        z = ConvVAE.sample(mu_k, logvar_k, generator)
        log_px_z = -reconstruction_nll(model.decode_logits(z), x.repeat_interleave(k, dim=0))
        log_w = log_px_z + log_normal(z, torch.zeros_like(z), torch.zeros_like(z)) - log_normal(z, mu_k, logvar_k)
        out.append(iw_nll_from_log_weights(log_w.view(len(x), k)))
    return torch.cat(out)
