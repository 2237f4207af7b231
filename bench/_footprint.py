"""overhead.py's footprint parts: a trial worker's memory over the floor, the experiment
folder's peak size over its final size, and one checkpoint's size and write time."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from _overhead_run import _env, _python, run_driver

PAPER_REDUCED = ["--preset", "paper", "--epochs", "1", "--trials", "2", "--seeds", "1", "--max-seeds", "1",
                 "--latent-dims", "20", "--max-train", "12000", "--gpus-per-trial", "0", "--num-cpus", "2"]
STORAGE_RUN = ["--preset", "paper", "--dataset", "sample", "--max-train", "2000", "--epochs", "6", "--trials", "4",
               "--seeds", "1", "--max-seeds", "1", "--latent-dims", "5,20", "--gpus-per-trial", "0", "--num-cpus",
               "2", "--scheduler", "fifo"]

# one per-epoch checkpoint at the paper widths: what the trial writes (save_state) and a copy of
# the folder (what Ray Tune's persist to a local storage path does), medians of 5, one thread
CHECKPOINT = r'''
import json, shutil, statistics, tempfile, time, torch
from pathlib import Path
from vae import ModelConfig, TrainConfig
from vae.checkpoint import save_state
from vae.training import TrainState
torch.set_num_threads(1)
config = TrainConfig(model=ModelConfig(latent_dim=20, channels=(32, 64), hidden_dim=256), batch_size=128, epochs=20)
state = TrainState.fresh(config, 48000)
state.model(torch.rand(8, 1, 28, 28))[0].sum().backward()
state.optimizer.step()  # Adam's moments exist, as after any epoch
save, copy = [], []
with tempfile.TemporaryDirectory() as tmp:
    for i in range(5):
        started = time.perf_counter()
        save_state(Path(tmp) / f"c{i}", state.model, config, state.to_dict())
        saved = time.perf_counter()
        shutil.copytree(Path(tmp) / f"c{i}", Path(tmp) / f"persisted{i}")
        save.append(saved - started)
        copy.append(time.perf_counter() - saved)
    size = sum(f.stat().st_size for f in (Path(tmp) / "c0").iterdir())
print(json.dumps({"bytes": size, "save_s": statistics.median(save), "copy_s": statistics.median(copy)}))
'''

FLOOR = r'''
import json, time, torch
from ray import tune
from vae import ModelConfig
from vae.model import ConvVAE
torch.set_num_threads(1)
model = ConvVAE(ModelConfig(latent_dim=20, channels=(32, 64), hidden_dim=256))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
time.sleep(0.5)
pss = [int(l.split()[1]) * 1024 for l in open("/proc/self/smaps_rollup") if l.startswith("Pss:")][0]
print(json.dumps({"pss": pss}))
'''


def _pss(proc) -> int:
    import psutil

    try:
        return proc.memory_full_info().pss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def memory_once(code: Path, storage: Path, name: str, data_dir: Path) -> dict:
    peaks: dict[int, dict] = {}

    import psutil

    def sample(proc, stop):
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                children = root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for child in children:
                try:
                    title = " ".join(child.cmdline())
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                entry = peaks.setdefault(child.pid, {"pss": 0, "titles": set()})
                entry["pss"] = max(entry["pss"], _pss(child))
                entry["titles"].add(title[:60])
            stop.wait(0.1)

    run = run_driver(
        code,
        ["run", *PAPER_REDUCED, "--data-dir", str(data_dir), "--storage", str(storage), "--name", name],
        sample=sample,
    )
    workers = [p["pss"] for p in peaks.values() if any("run_trial" in t or "ImplicitFunc" in t for t in p["titles"])]
    others = {t: p["pss"] for p in peaks.values() for t in sorted(p["titles"])[:1] if p["pss"] not in workers}
    floor = json.loads(
        subprocess.run(
            [_python(code), "-c", FLOOR], cwd=code, env=_env(code), capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )["pss"]
    return {
        "wall_s": run["wall_s"],
        "worker_peak_pss_mb": sorted(w / 1e6 for w in workers),
        "floor_pss_mb": floor / 1e6,
        "largest_over_floor_mb": (max(workers) - floor) / 1e6 if workers else None,
        "other_processes_pss_mb": {k: round(v / 1e6) for k, v in sorted(others.items(), key=lambda kv: -kv[1])[:8]},
    }


def checkpoint_once(code: Path) -> dict:
    out = subprocess.run([_python(code), "-c", CHECKPOINT], cwd=code, env=_env(code), capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def storage_once(code: Path, storage: Path, name: str) -> dict:
    peak = [0]

    def sample(proc, stop):
        while not stop.is_set():
            if (storage / name).is_dir():
                peak[0] = max(peak[0], _du(storage / name))
            stop.wait(0.25)

    run = run_driver(code, ["run", *STORAGE_RUN, "--storage", str(storage), "--name", name], sample=sample)
    final = _du(storage / name)
    return {
        "wall_s": run["wall_s"],
        "peak_mb": peak[0] / 1e6,
        "final_mb": final / 1e6,
        "peak_over_final": peak[0] / final,
    }
