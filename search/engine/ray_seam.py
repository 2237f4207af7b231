"""Where vae-search reaches past Ray's public API, in one place. Each use says why; all were
checked on the Ray versions in `CHECKED_ON`, and tests/search/test_ray_seam.py fails when the
installed Ray is another or no longer has what is used here.

- `not_counted`: Ray Tune counts every trial failure against `max_failures` except an actor error
  Ray marks preempted. A lost node and a GPU the node cannot use are not the trial's fault.
- `driver_printer`: Ray's driver prints the cluster's error paragraphs from a thread through
  `ray._private.worker.print_to_stdstream`; they go to the experiment's driver log instead.
- `autoscaled`: whether the cluster has an autoscaler, from the config its GCS holds (`vae-search check`).
- `saved_storage`: the storage Ray Tune saves in its search generator's experiment spec, which
  the trials created after `Tuner.restore` take (`search.engine.experiment.relocate_search`).
- `own_staging`: Ray Tune stages a driver's files (its experiment state, the trials' folders) on
  the node in SESSION/artifacts/<the second Tune started>/<experiment folder name>, then copies
  them to the experiment. Every vae-search experiment's folder is `tune`: two searches started
  in the same second on one cluster would stage in one folder and each copy the other's trials
  and state into its own experiment (seen: two runs of one command on one head).
- `kept_actors`: with `reuse_actors`, Ray Tune keeps an idle trial actor only for a trial already
  staged, or one actor when none is. While the searcher waits (a size's seeds wait for its search
  trials, racing for every seeds result), no trial is staged: every finished actor but one was
  stopped, and the trials that followed started new worker processes (importing torch again,
  competing with the running trials for the cores, and making Tune wait at the end for one
  still starting).
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


@contextlib.contextmanager
def own_staging() -> Iterator[None]:
    """While it lasts, every Ray Tune `StorageContext` made in this process stages in a folder of
    its own: a random suffix after the second its folder is named by. A restored run keeps the
    folder its trials were saved with (Ray Tune reuses it), which was made unique when it started."""
    import uuid

    from ray.train._internal.storage import StorageContext

    made = StorageContext.__init__
    suffix = uuid.uuid4().hex[:8]

    def init(self, *args, **kwargs):
        made(self, *args, **kwargs)
        self._timestamp = f"{self._timestamp}_{suffix}"  # read by StorageContext._get_session_path alone

    StorageContext.__init__ = init
    try:
        yield
    finally:
        StorageContext.__init__ = made


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


@contextlib.contextmanager
def kept_actors(slots: int) -> Iterator[None]:
    """While it lasts, Ray Tune's actor caches keep up to `slots` idle trial actors between trials
    (`_ObjectCache` in ray/tune/utils/object_cache.py: what it keeps for staged trials, plus up to
    `slots` in all) until the run ends; a flush with `force_all` (the search is over, or Tune
    cleans up) still stops them all."""
    from ray.tune.utils.object_cache import _ObjectCache

    cache, flush = _ObjectCache.cache_object, _ObjectCache.flush_cached_objects

    def cache_object(self, key, obj) -> bool:
        if cache(self, key, obj):
            return True
        if self._num_cached_objects >= slots:
            return False
        self._cached_objects[key].append(obj)
        self._num_cached_objects += 1
        return True

    def flush_cached_objects(self, force_all: bool = False):
        if force_all:
            yield from flush(self, force_all=True)
            return
        for key, objects in self._cached_objects.items():  # oldest first, as Ray Tune evicts
            while len(objects) > self._max_num_objects[key] and self._num_cached_objects > slots:
                self._num_cached_objects -= 1
                yield objects.pop(0)

    _ObjectCache.cache_object, _ObjectCache.flush_cached_objects = cache_object, flush_cached_objects
    try:
        yield
    finally:
        _ObjectCache.cache_object, _ObjectCache.flush_cached_objects = cache, flush
