"""Training-recipe levers, each measured on its own: images per second per core and validation
PSNR per epoch, for the quick model (latent 15) on the 4,000 sample training digits, one thread.

Every variant runs the same loop (below) with one lever changed from its parent, so each row
says what that lever buys. Levers: batch size with a matched learning rate, a one-cycle
learning-rate schedule, one host synchronisation per epoch instead of per batch
(`loss.item()`), channels-last memory format, Adam's fused CPU kernel, `torch.compile`, and
model width. The last row runs the product's own `vae.train` as a quick-preset trial does
(half-width model, batch 32, one-cycle, fused Adam), against the first row (the previous recipe).

Images/s: the median over the variant's epochs of training images / training seconds (the
validation pass is not in it). PSNR: the mean of the ten per-digit PSNRs on the 500 validation
digits, from vae.evaluate, after every epoch. --seeds runs each variant that many times;
figures are medians over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time

import torch
from _common import RESULTS, median, write

from vae import DataConfig, ModelConfig, TrainConfig, evaluate, load_data, train
from vae.data import to_unit
from vae.metrics import kl_divergence, vae_loss
from vae.model import ConvVAE


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    batch_size: int = 32
    lr: float = 1e-3
    schedule: str = "constant"  # constant | onecycle
    sync: str = "batch"  # batch: loss.item() every batch | epoch: once per epoch
    channels_last: bool = False
    fused: bool = False
    compile: bool = False
    channels: tuple[int, int] = (32, 64)
    hidden_dim: int = 256
    kl_warmup: float = 0.0  # share of all steps over which the KL weight ramps from 0 to 1 (0: none)


def loop(v: Variant, splits, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = ConvVAE(ModelConfig(latent_dim=15, channels=v.channels, hidden_dim=v.hidden_dim))
    fmt = torch.channels_last if v.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=v.lr, **({"fused": True} if v.fused else {}))
    steps = math.ceil(len(splits.train) / v.batch_size)
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=v.lr, total_steps=epochs * steps)
                 if v.schedule == "onecycle" else None)
    step = torch.compile(model, dynamic=False) if v.compile else model  # the short last batch recompiles once
    pixels = splits.train.pixels
    rates, psnr, kl, seconds, compile_s = [], [], [], 0.0, None
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(pixels), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        started = time.perf_counter()
        total = torch.zeros(())
        for start in range(0, len(pixels), v.batch_size):
            batch = to_unit(pixels[order[start : start + v.batch_size]]).contiguous(memory_format=fmt)
            logits, mu, logvar = step(batch)
            done = (epoch * steps + start // v.batch_size) / (epochs * steps)
            beta = min(1.0, done / v.kl_warmup) if v.kl_warmup else 1.0
            loss = vae_loss(logits, batch, mu, logvar, beta)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if v.sync == "batch":
                total += loss.item() * len(batch)
            else:
                total += loss.detach() * len(batch)
            if compile_s is None and v.compile:
                compile_s = time.perf_counter() - started  # the first step pays the compilation
        float(total)
        elapsed = time.perf_counter() - started
        seconds += elapsed
        rates.append(len(pixels) / (elapsed - (compile_s or 0.0) if epoch == 0 and compile_s else elapsed))
        _, metrics = evaluate(model, splits.val, beta=1.0)
        psnr.append(metrics["psnr_mean"])
        with torch.no_grad():
            mu, logvar = model.encode(to_unit(splits.val.pixels))
            kl.append(float(kl_divergence(mu, logvar).mean()))
    return {"images_per_s": median(rates), "psnr": psnr, "kl": kl, "train_s": seconds, "compile_s": compile_s}


def product(splits, epochs: int, seed: int) -> dict:
    """vae.train as a quick-preset trial runs it at latent 15: the preset's model and batch
    size, the schedule's default, and the enqueued (geometric middle) peak learning rate."""
    from search.config import resolve

    quick = resolve("quick", {})
    config = TrainConfig(model=ModelConfig(latent_dim=15, channels=quick.channels, hidden_dim=quick.hidden_dim),
                         lr=math.sqrt(quick.lr_range[0] * quick.lr_range[1]), lr_schedule=quick.lr_schedule,
                         batch_size=quick.batch_size, epochs=epochs, seed=seed, threads=1)
    state = train(config, splits)
    rates = [len(splits.train) / r.fit_time_s for r in state.history]
    return {"images_per_s": median(rates), "psnr": [r.psnr_mean for r in state.history],
            "kl": [r.kl for r in state.history], "train_s": sum(r.fit_time_s for r in state.history),
            "batch_size": config.batch_size, "lr": config.lr, "schedule": config.lr_schedule}


def variants() -> list[tuple[Variant, str]]:
    """(variant, the lever it changes from the row before it or from the named parent)."""
    today = Variant("today: batch 32, lr 1e-3, constant")
    b128 = dataclasses.replace(today, name="batch 128, lr 1e-3", batch_size=128)
    b128_lr = dataclasses.replace(b128, name="batch 128, lr 2e-3", lr=2e-3)
    cycle = dataclasses.replace(b128, name="batch 128, one-cycle to 4e-3", lr=4e-3, schedule="onecycle")
    cycle8 = dataclasses.replace(cycle, name="batch 128, one-cycle to 8e-3", lr=8e-3)
    sync = dataclasses.replace(cycle, name="+ one sync per epoch", sync="epoch")
    b256 = dataclasses.replace(sync, name="batch 256, one-cycle to 6e-3", batch_size=256, lr=6e-3)
    small = dataclasses.replace(today, name="batch 32, one-cycle to 3e-3", schedule="onecycle", lr=3e-3, sync="epoch")
    warm = dataclasses.replace(today, name="batch 32, KL warm-up over 25%", kl_warmup=0.25, sync="epoch")
    return [
        (today, "baseline"),
        (dataclasses.replace(today, name="today + one sync per epoch", sync="epoch"), "host syncs"),
        (b128, "batch size"),
        (b128_lr, "matched lr"),
        (cycle, "lr schedule"),
        (cycle8, "lr schedule, higher peak"),
        (sync, "host syncs"),
        (b256, "batch size"),
        (dataclasses.replace(sync, name="+ channels-last", channels_last=True), "memory format"),
        (dataclasses.replace(sync, name="+ fused Adam", fused=True), "optimizer kernel"),
        (dataclasses.replace(sync, name="+ torch.compile", compile=True), "compiler"),
        (dataclasses.replace(sync, name="narrower (16, 32), hidden 256", channels=(16, 32)), "width"),
        (dataclasses.replace(sync, name="wider (64, 128), hidden 512", channels=(64, 128), hidden_dim=512), "width"),
        (small, "lr schedule at batch 32"),
        (dataclasses.replace(small, name="batch 32, one-cycle to 2e-3", lr=2e-3), "lr schedule at batch 32"),
        (dataclasses.replace(small, name="batch 64, one-cycle to 3e-3", batch_size=64), "batch size"),
        (dataclasses.replace(today, name="batch 16, lr 1e-3", batch_size=16, sync="epoch"), "batch size"),
        (warm, "KL warm-up (changes the objective early on)"),
        (dataclasses.replace(small, name="batch 32, one-cycle to 3e-3, KL warm-up 25%", kl_warmup=0.25), "KL warm-up"),
        (dataclasses.replace(today, name="narrower (16, 32) at batch 32", channels=(16, 32), sync="epoch"), "width"),
        (
            dataclasses.replace(today, name="batch 32 + channels-last", channels_last=True, sync="epoch"),
            "memory format",
        ),
        (dataclasses.replace(today, name="batch 32 + fused Adam", fused=True, sync="epoch"), "optimizer kernel"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=8, help="the quick preset's epochs")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--only", help="comma-separated substrings of variant names to run")
    parser.add_argument("--append", action="store_true", help="keep the other variants of an earlier recipe.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    splits = load_data(DataConfig(dataset="sample"))
    rows = []
    chosen = [(v, lever) for v, lever in variants() if not args.only or any(s in v.name for s in args.only.split(","))]
    loop(chosen[0][0], splits, 1, 0)  # warm-up (allocator, kernels)
    for v, lever in chosen:
        runs = [loop(v, splits, args.epochs, seed) for seed in range(args.seeds)]
        row = {
            "variant": v.name,
            "lever": lever,
            **{k: (list(x) if isinstance(x, tuple) else x) for k, x in dataclasses.asdict(v).items()},
            "images_per_s": median([r["images_per_s"] for r in runs]),
            "final_psnr": median([r["psnr"][-1] for r in runs]),
            "psnr_by_epoch": [median([r["psnr"][e] for r in runs]) for e in range(args.epochs)],
            "final_kl": median([r["kl"][-1] for r in runs]),
            "train_s": median([r["train_s"] for r in runs]),
            "compile_s": runs[0]["compile_s"],
        }
        rows.append(row)
        print(f"{v.name:40s} {row['images_per_s']:7.0f} img/s  PSNR {row['final_psnr']:6.2f} dB  "
              f"train {row['train_s']:6.1f} s  KL {row['final_kl']:5.1f}", flush=True)
    runs = [product(splits, args.epochs, seed) for seed in range(args.seeds)]
    ours = {"variant": "vae.train, quick preset recipe", "images_per_s": median([r["images_per_s"] for r in runs]),
            "final_psnr": median([r["psnr"][-1] for r in runs]),
            "psnr_by_epoch": [median([r["psnr"][e] for r in runs]) for e in range(args.epochs)],
            "final_kl": median([r["kl"][-1] for r in runs]), "train_s": median([r["train_s"] for r in runs]),
            **{k: runs[0][k] for k in ("batch_size", "lr", "schedule")}}
    print(
        f"{'vae.train, quick preset recipe':40s} {ours['images_per_s']:7.0f} img/s  PSNR {ours['final_psnr']:6.2f} dB  "
        f"train {ours['train_s']:6.1f} s",
        flush=True,
    )
    base = rows[0] if rows and rows[0]["lever"] == "baseline" else None
    figures = {"images": len(splits.train), "val_images": len(splits.val), "latent_dim": 15, "threads": 1,
               "epochs": args.epochs, "seeds": args.seeds, "variants": rows, "product": ours}
    if base:
        speedup = ours["images_per_s"] / base["images_per_s"]
        figures |= {
            "target": "quick-preset trial images/s per core >= 2x the previous recipe's at batch 32, "
            "at equal or better PSNR per epoch",
            "speedup": speedup,
            "psnr_gain_db": ours["final_psnr"] - base["final_psnr"],
            "met": speedup >= 2
            and all(o >= b - 0.05 for o, b in zip(ours["psnr_by_epoch"], base["psnr_by_epoch"], strict=True)),
        }
    if args.append and (RESULTS / "recipe.json").exists():
        earlier = json.loads((RESULTS / "recipe.json").read_text())
        names = {r["variant"] for r in rows}
        figures["variants"] = [r for r in earlier.get("variants", []) if r["variant"] not in names] + rows
        for key in ("target", "speedup", "psnr_gain_db", "met"):
            if key not in figures and key in earlier:
                figures[key] = earlier[key]
    write("recipe", figures)


if __name__ == "__main__":
    main()
