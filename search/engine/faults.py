"""A trial's own failures told apart from the loss of the node it ran on.

Ray Tune retries a failed trial from its last checkpoint and counts the failure against
`--max-failures`, except an actor error Ray marks `preempted`; a vanished spot node is not
marked, so without this each loss would spend a retry. `Failures`, one per driver session, is a
logging filter on Tune's controller, which logs every failure with its exception just before
counting it: when Ray says the actor's node died or was preempted, or the actor cannot be
reached (`ActorUnavailableError`), the failure is marked `preempted` (not counted) and the trial
restarts from its checkpoint on a live node. Anything else counts. No traceback reaches the
console: `search.engine.progress` prints one line per lost node and per failure, and what Ray
said (its `(raylet)` messages too, `quiet_raylet_messages`) goes to the driver log. The Ray
internals this touches are behind `search.engine.ray_seam`.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from typing import Iterator

from search.engine.ray_seam import driver_printer, not_counted
from search.engine.stop import DeviceUnusable, StopRequest

CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"
_FAILED = "Trial task failed for trial "


def is_lost_node(exc: BaseException | None) -> bool:
    """Whether `exc`, a trial's failure, says that the node it ran on was lost."""
    from ray.exceptions import ActorUnavailableError, RayActorError

    if not isinstance(exc, RayActorError):
        return False  # the trial's own code raised (a RayTaskError), or Ray Tune's own error
    return exc.preempted or isinstance(exc, ActorUnavailableError) or "its node has died" in str(exc)


def device_unusable(exc: BaseException | None) -> str | None:
    """The message of a trial's `DeviceUnusable` (a GPU trial on a node whose CUDA torch cannot
    use) when `exc` is one, else None."""
    cause = getattr(exc, "cause", None) or exc
    return str(cause) if isinstance(cause, DeviceUnusable) else None


def actor_node(exc: BaseException) -> tuple[str, str]:
    """(node id, IP address) of the node the failed actor was placed on, as Ray's GCS recorded
    it; "?" for what it does not know."""
    from ray._private import state

    try:
        address = (state.actors(exc.actor_id) or {}).get("Address") or {}
    except Exception:  # noqa: BLE001 (a detail of a message: never worth failing the run)
        address = {}
    return address.get("NodeID") or "?", address.get("IPAddress") or "?"


def error_words(exc: BaseException | None) -> str:
    """The exception's type and first line; for an error the trial's code raised, the original's."""
    exc = getattr(exc, "cause", None) or exc
    if exc is None:
        return "no error recorded"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:160] if lines else ''}".rstrip(": ")


class Failures(logging.Filter):
    """On Ray Tune's controller logger while a driver session lasts: classifies each trial
    failure as it is logged (`lost`: trial id -> the lost node's id and IP address; `words`:
    trial id -> what failed, in a few words), and keeps its text for the driver log (`details`)
    instead of the console."""

    def __init__(self, stop: StopRequest | None = None) -> None:
        super().__init__()
        self.stop = stop or StopRequest()  # the session's: a GPU no trial can use stops the run
        self.lost: dict[str, tuple[str, str]] = {}
        self.words: dict[str, str] = {}
        self.details: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(_FAILED):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        text = "".join(traceback.format_exception(exc)) if exc is not None else message
        from search.engine.stop import is_disk_full

        if is_disk_full(text):
            return True  # to Ray's handlers, where a full disk stops the run (`StopRequest.log_filter`)
        trial_id = message.rsplit("_", 1)[-1]  # Tune names the trial `<trainable>_<id>`
        unusable = device_unusable(exc)
        if unusable:
            not_counted(exc)  # the trial waits, from its checkpoint, for the run to resume on a fixed node
            self.stop.cannot_run(unusable, DeviceUnusable)
        lost = is_lost_node(exc)
        if lost:
            not_counted(exc)
            self.lost[trial_id] = actor_node(exc)
        self.words[trial_id] = error_words(exc)
        self.details.append(f"{'lost node' if lost else 'failure'} of trial {trial_id}:\n{text}")
        return False

    def take_details(self) -> list[str]:
        details, self.details = self.details, []
        return details


@contextlib.contextmanager
def quiet_raylet_messages(failures: Failures) -> Iterator[None]:
    """Ray's driver prints the cluster's error messages (a worker or a raylet died, a node was
    marked dead) from a thread, each a paragraph: while this lasts they go to `failures.details`
    (the driver log); everything else Ray prints is left as it is."""
    def to_details(data, printer):
        if data.get("pid") == "raylet":
            failures.details.append("Ray: " + "\n".join(data.get("lines", [])))
        else:
            printer(data)

    with driver_printer(to_details):
        yield
