"""The racing state of a run: one frozen value that the searcher replaces at every change and
that progress, `status` and the end-of-run report read in memory. `race.json` is its
serialised form, for other processes (`vae-search status`, `resume`, `analyze`, a cloud copy).

race.json holds `stage`, the fields of the last `analysis.racing.Race` (latent_dim,
confidence, contenders, n_trials, mean, se, …) once one was assessed, `target` (the
confidence racing aims at), `stop_reason` once the run is done, and `updated_at`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from analysis.layout import STAGES
from analysis.racing import Race
from vae.files import atomic_write_text


@dataclass(frozen=True)
class RaceState:
    stage: str = STAGES[0]  # search | seeds | racing | done
    race: Race | None = None  # the decision on the completed seeds trials, last assessed
    target: float | None = None  # the confidence racing aims at (`--confidence`)
    stop_reason: str | None = None  # why racing stopped (an analysis.racing.StopReason's value), once stage is done
    updated_at: float | None = None  # Unix time of the last change

    @property
    def latent_dim(self) -> int | None:
        return self.race.latent_dim if self.race else None

    @property
    def confidence(self) -> float | None:
        return self.race.confidence if self.race else None

    @property
    def done(self) -> bool:
        return self.stage == "done"

    def advanced(self, stage: str) -> "RaceState":
        """This state at `stage` if that is later than its own (a stage never goes back)."""
        if STAGES.index(stage) <= STAGES.index(self.stage):
            return self
        return dataclasses.replace(self, stage=stage, updated_at=time.time())

    def assessed(self, race: Race, target: float) -> "RaceState":
        return dataclasses.replace(self, race=race, target=target, updated_at=time.time())

    def reopened(self) -> "RaceState":
        """A finished race raced on under new limits (`vae-search resume EXP --max-seeds N`)."""
        return dataclasses.replace(self, stage="racing", stop_reason=None, updated_at=time.time())

    def finished(self, stop_reason: str) -> "RaceState":
        return dataclasses.replace(self, stage="done", stop_reason=str(stop_reason), updated_at=time.time())

    def reason_words(self) -> str:
        """Why racing stopped, in words."""
        from analysis.racing import StopReason

        if self.stop_reason not in {r.value for r in StopReason}:  # not stopped, or a reason this release does not know
            return str(self.stop_reason or "not stopped")
        return StopReason(self.stop_reason).words(self.confidence or 0.0, self.target)

    def to_dict(self) -> dict:
        out: dict = {"stage": self.stage}
        if self.race is not None:
            out.update(self.race.to_dict())
        for key in ("target", "stop_reason", "updated_at"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "RaceState":
        stage = values.get("stage", STAGES[0])
        return cls(
            stage=stage if stage in STAGES else STAGES[0],
            race=Race.from_dict(values) if "confidence" in values else None,
            target=values.get("target"),
            stop_reason=values.get("stop_reason"),
            updated_at=values.get("updated_at"),
        )

    def write(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")


def read_race(path: str | Path) -> RaceState:
    """The racing state a run wrote to `path` (race.json); the initial state when there is none
    yet or it cannot be read (it is rewritten at every change)."""
    try:
        values = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return RaceState()
    return RaceState.from_dict(values) if isinstance(values, dict) else RaceState()
