"""Where vae-search reaches past Ray's public API, in one place. Each use says why; all were
checked on the Ray versions in `CHECKED_ON`, and tests/search/test_ray_seam.py fails when the
installed Ray is another or no longer has what is used here.

- `not_counted`: Ray Tune counts every trial failure against `max_failures` except an actor error
  Ray marks preempted. A lost node and a GPU the node cannot use are not the trial's fault.
- `driver_printer`: Ray's driver prints the cluster's error paragraphs from a thread through
  `ray._private.worker.print_to_stdstream`; they go to the experiment's driver log instead.
- `autoscaled`: whether the cluster has an autoscaler, read from its GCS (`vae-search check`).
- `autoscaled`: whether the cluster has an autoscaler, from the config its GCS holds (`vae-search check`).
- `saved_storage`: the storage Ray Tune saves in its search generator's experiment spec, which
  the trials created after `Tuner.restore` take (`search.engine.experiment.relocate_search`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

CHECKED_ON = ("2.60",)  # major.minor of the Ray releases this module was checked on


def not_counted(exc: BaseException) -> None:
    """Make Ray Tune leave the failure `exc` out of the trial's count: the trial goes back to the
    queue from its last checkpoint however often it happens (Trial.handle_error in Ray Tune)."""
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(exc, RayActorError):
        exc._preempted = True  # Trial._handle_ray_actor_error skips preempted errors
    elif isinstance(exc, RayTaskError):
        # Trial._handle_ray_task_error handles the cause as an actor error when it is one
        exc.as_instanceof_cause = lambda: RayActorError(preempted=True)


@contextlib.contextmanager
def driver_printer(replacement: Callable[[dict, Callable], None]) -> Iterator[None]:
    """While it lasts, Ray's driver prints the cluster's messages through
    `replacement(data, original_printer)`."""
    from ray._private import worker

    printer = worker.print_to_stdstream
    worker.print_to_stdstream = lambda data, ignore_prefix: replacement(data, lambda d: printer(d, ignore_prefix))
    try:
        yield
    finally:
        worker.print_to_stdstream = printer


def saved_storage(search_state: dict[str, Any]):
    """The `StorageContext` in a search generator state Ray Tune saved (search_gen_state-*.json),
    or None."""
    return search_state["experiment"].spec.get("storage")


def autoscaled() -> bool:
    """Whether the connected cluster has an autoscaler (Ray's GCS holds its cluster config)."""
    from ray._private import state

    try:
        return state.state.get_cluster_config() is not None
    except Exception:  # noqa: BLE001 (an older GCS without it: no autoscaler to speak of)
        return False
