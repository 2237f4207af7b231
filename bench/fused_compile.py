"""Is the fused training step faster compiled (`torch.compile`) than eager on this machine's CPU?
Issue 38 part 2 captures the step on CUDA; on a CPU it changes nothing unless measured faster.

One process, one torch thread, paper widths (latent 20, channels 32/64, hidden 256), batch 128,
K members under vmap as `vae.fused` runs them: the step (loss of every member, backward, Adam)
eager, then through `torch.compile` (default mode). Per side: the first step (the compile, for
the compiled side) and the median of --steps steps after it. Writes bench/results/fused_compile.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    import torch
    from torch.func import functional_call, vmap

    from vae import ModelConfig, TrainConfig
    from vae.fused import FusedState
    from vae.metrics import vae_loss

    torch.set_num_threads(1)
    configs = [TrainConfig(model=ModelConfig(latent_dim=20, channels=(32, 64), hidden_dim=256), batch_size=128,
                           epochs=20, seed=s) for s in range(args.k)]
    state = FusedState.fresh(configs, 48000)

    def member_loss(params, x, eps):
        logits, mu, logvar = functional_call(state.template, params, (x, eps))
        return vae_loss(logits, x, mu, logvar, 1.0)

    x, eps = torch.rand(args.k, 128, 1, 28, 28), torch.randn(args.k, 128, 20)

    def step(loss) -> float:
        started = time.perf_counter()
        losses = loss(state.params, x, eps)
        state.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        state.optimizer.step()
        return time.perf_counter() - started

    figures = {"k": args.k, "steps": args.steps, "torch": torch.__version__}
    for name, loss in (("eager", vmap(member_loss)), ("compiled", torch.compile(vmap(member_loss)))):
        first = step(loss)
        steps = [step(loss) for _ in range(args.steps)]
        figures[name] = {"first_step_s": first, "median_step_s": statistics.median(steps)}
        print(name, figures[name], flush=True)
    figures["compiled_over_eager"] = figures["compiled"]["median_step_s"] / figures["eager"]["median_step_s"]
    write("fused_compile", figures)


if __name__ == "__main__":
    main()
