"""Where a run stands: a snapshot the driver writes to `status.json` every few seconds while it
works, and `vae-search status EXPERIMENT` reads (from another shell, or another machine that
sees the same storage). Its one writer and reader: `write` (the driver's progress callback,
`search.engine.progress`, every 2 s), `mark_stopped` (the driver, when a run stops), `read`.

Snapshot fields: stage, state (running | done | stopped), trials (done / completed / stopped /
diverged / errored / running / pending), the minimum number of trials the run will have,
best validation PSNR so far per latent size, the racing decision and confidence, elapsed
seconds, ETA seconds (an estimate: racing may add trials), updated_at (Unix time).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from analysis.layout import ENDED, outcome
from search.store.files import RACE_FILE, RUN_FILE, STATUS_FILE, TRIALS_FILE
from search.store.race import RaceState
from search.store.record import resume_command
from vae.errors import UsageError
from vae.files import atomic_write_text

STALE_S = 120.0  # no update for this long while "running": the driver has probably stopped


def write(experiment: str | Path, status: dict[str, Any]) -> None:
    """status.json, whole (temporary file, then rename)."""
    atomic_write_text(Path(experiment) / STATUS_FILE, json.dumps(status, indent=2) + "\n")


def mark_stopped(experiment: str | Path, reason: str) -> None:
    """Record in status.json that the run stopped, and why, rather than let it go stale. The run
    is stopping anyway: a file that cannot be read or written is left to `read`, which then
    reports the run by its age."""
    file = Path(experiment) / STATUS_FILE
    try:
        current = json.loads(file.read_text()) if file.is_file() else {}
        write(experiment, {**current, "stopped": reason, "updated_at": time.time()})
    except (OSError, ValueError):
        pass


def live_heartbeat(experiment: str | Path) -> dict[str, Any] | None:
    """The local experiment's status.json when a live driver wrote it (within `STALE_S`, neither
    stopped nor done), else None: the driver lock's answer where the file system has no flock."""
    try:
        status = json.loads((Path(experiment) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    stale = time.time() - float(status.get("updated_at", 0)) > STALE_S
    return None if status.get("stopped") or status.get("state") == "done" or stale else status


def snapshot(trials: list[dict[str, Any]], *, minimum_trials: int, slots: int, elapsed_s: float,
             race: RaceState) -> dict[str, Any]:
    """`trials`: one dict per trial with status (Tune's: PENDING, RUNNING, PAUSED, TERMINATED,
    ERROR), latent_dim, psnr (last reported), diverged, epochs, max_epochs, seconds (wall)."""
    counts = {"done": 0, "completed": 0, "stopped": 0, "diverged": 0, "errored": 0, "running": 0, "pending": 0}
    best: dict[str, float] = {}
    durations = []
    for trial in trials:
        ended = outcome(trial["status"], diverged=bool(trial.get("diverged")), epochs=int(trial.get("epochs") or 0),
                        max_epochs=int(trial.get("max_epochs") or 0))
        if ended in ENDED:
            counts["done"] += 1
            counts[ended] += 1
            if trial.get("seconds"):
                durations.append(float(trial["seconds"]))
        else:
            counts["pending" if ended == "paused" else ended] += 1
        psnr = trial.get("psnr")
        if psnr is not None and math.isfinite(psnr) and not trial.get("diverged"):
            key = str(trial["latent_dim"])
            best[key] = max(best.get(key, -math.inf), float(psnr))
    total = max(minimum_trials, len(trials))
    remaining = max(0, total - counts["done"])
    eta = None
    if durations:
        eta = remaining * (sum(durations) / len(durations)) / max(1, slots)
    return {
        **_race_fields(race),
        "trials": counts,
        "minimum_trials": total,
        "best_psnr": dict(sorted(best.items(), key=lambda kv: int(kv[0]))),
        "elapsed_s": round(elapsed_s, 1),
        "eta_s": None if eta is None else round(eta, 1),
        "updated_at": time.time(),
    }


def _race_fields(race: RaceState) -> dict[str, Any]:
    """What status.json repeats of the racing state."""
    return {"stage": race.stage, "latent_dim": race.latent_dim, "confidence": race.confidence, "target": race.target,
            "contenders": list(race.race.contenders) if race.race else None, "stop_reason": race.stop_reason}


def one_line(status: dict[str, Any]) -> str:
    """The live line: trials, running, best per size, confidence, elapsed, ETA."""
    t = status["trials"]
    parts = [
        f"{status['stage']}: {t['done']}/{status['minimum_trials']}{'+' if status['stage'] != 'done' else ''} trials "
        "done",
        f"{t['running']} running",
    ]
    if t["errored"]:
        parts.append(f"{t['errored']} errored")
    if status["best_psnr"]:
        parts.append("best " + " ".join(f"{d}:{v:.2f}" for d, v in status["best_psnr"].items()) + " dB")
    if status.get("confidence") is not None and status.get("latent_dim") is not None:
        if status["stage"] != "done" and not status["confidence"]:  # one seed per size: no spread measured yet
            parts.append("choice pending")
        else:
            parts.append(f"choice {status['latent_dim']} at confidence {status['confidence']:.2f}")
    parts.append(f"elapsed {_duration(status['elapsed_s'])}")
    if status.get("eta_s") is not None and status["stage"] != "done":
        parts.append(f"ETA ≥ {_duration(status['eta_s'])}")
    return " | ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def read(experiment: str) -> dict[str, Any]:
    """The status of the experiment at a folder or a storage URI (run.json, status.json, race.json)."""
    files = {name: _read_json(experiment, name) for name in (RUN_FILE, STATUS_FILE, RACE_FILE)}
    if files[RUN_FILE] is None:
        raise UsageError(f"{experiment} is not a vae-search experiment (no {RUN_FILE})")
    run, status = files[RUN_FILE], files[STATUS_FILE] or {}
    done = bool(run.get("done"))
    out = {"experiment": experiment, **status, "address": run.get("address")}
    if files[RACE_FILE] is not None:  # newer than status.json's copy
        out.update(_race_fields(RaceState.from_dict(files[RACE_FILE])))
    if done:
        out["state"] = "done"
        out["stage"] = "done"
        out["eta_s"] = 0.0
    elif not status:
        out["state"] = "not started"
    elif status.get("stopped"):
        out["state"] = "stopped"
        out["seconds_since_update"] = round(time.time() - float(status.get("updated_at", 0)), 1)
    else:
        age = time.time() - float(status.get("updated_at", 0))
        out["state"] = "running" if age < STALE_S else "stopped"
        out["seconds_since_update"] = round(age, 1)
    if done and _exists(experiment, TRIALS_FILE):
        out["trials_csv"] = _join(experiment, TRIALS_FILE)
    return out


def format_status(status: dict[str, Any]) -> str:
    resume = resume_command(status["experiment"], status.get("address"))
    lines = [
        f"experiment: {status['experiment']}",
        f"state: {status['state']}"
        + (
            f" ({status['stopped']}; `{resume}` continues it)"
            if status.get("stopped")
            else f" (no update for {status['seconds_since_update']:.0f} s: the driver may have stopped; "
            f"`{resume}` continues it)"
            if status["state"] == "stopped"
            else ""
        ),
    ]
    if "trials" in status:
        lines.append(one_line(status))
        t = status["trials"]
        lines.append(
            f"trials: {t['done']} done ({t['completed']} completed, {t['stopped']} stopped, {t['diverged']} diverged, "
            f"{t['errored']} errored), {t['running']} running, {t['pending']} pending"
        )
        for dim, psnr in status.get("best_psnr", {}).items():
            lines.append(f"  latent {dim}: best validation PSNR so far {psnr:.2f} dB")
    if status.get("latent_dim") is not None:
        target = f" (target {status['target']:.2f})" if status.get("target") is not None else ""
        lines.append(
            f"decision: latent size {status['latent_dim']}, confidence {status.get('confidence', 0):.2f}{target}; "
            f"contenders {', '.join(map(str, status.get('contenders') or [])) or 'none'}"
        )
    if status.get("stop_reason"):
        lines.append(f"racing stopped: {status['stop_reason']}")
    return "\n".join(lines) + "\n"


def _join(location: str, name: str) -> str:
    from search.store.storage import is_uri, join

    return join(location, name) if is_uri(location) else str(Path(location) / name)


def _exists(location: str, name: str) -> bool:
    from search.store.storage import is_file

    return is_file(_join(location, name))  # in a bucket too, without downloading the file


def _read_json(location: str, name: str) -> dict[str, Any] | None:
    from search.store.storage import is_uri, read_bytes

    if not is_uri(location) and not Path(location).expanduser().is_dir():
        raise UsageError(f"experiment {location} does not exist")
    try:
        blob = read_bytes(_join(str(Path(location).expanduser()) if not is_uri(location) else location, name))
    except OSError as exc:
        raise UsageError(f"cannot read {name} at {location}: {' '.join(str(exc).split())[:200]}") from None
    if blob is None:
        return None
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        return None  # caught mid-write from another machine: treat as missing
