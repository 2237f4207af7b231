"""What search/engine/ray_seam.py uses of Ray's internals is still there: this fails, with what
moved, when the installed Ray is one the seam was not checked on or lacks what it uses."""

import inspect
from importlib.metadata import version

from search.engine import ray_seam


def test_the_installed_ray_is_one_the_seam_was_checked_on():
    installed = ".".join(version("ray").split(".")[:2])
    assert installed in ray_seam.CHECKED_ON, (
        f"Ray {version('ray')} is not among the releases search/engine/ray_seam.py was checked on "
        f"({', '.join(ray_seam.CHECKED_ON)}): re-check each use it lists, then add {installed}")


def test_a_failure_made_not_counted_is_one_ray_tune_does_not_count():
    from ray.exceptions import RayActorError, RayTaskError
    from ray.tune.experiment.trial import Trial

    actor = RayActorError()
    ray_seam.not_counted(actor)
    assert actor.preempted
    task = RayTaskError("run_trial", "Traceback ...", RuntimeError("no CUDA"))
    ray_seam.not_counted(task)
    assert isinstance(task.as_instanceof_cause(), RayActorError) and task.as_instanceof_cause().preempted
    # how Ray Tune decides (Trial.handle_error): a task error's cause that is an actor error is
    # handled as one, and a preempted actor error is not counted
    assert "as_instanceof_cause()" in inspect.getsource(Trial._handle_ray_task_error)
    assert "exc.preempted" in inspect.getsource(Trial._handle_ray_actor_error)


def test_the_driver_printer_is_swapped_and_put_back():
    from ray._private import worker

    original = worker.print_to_stdstream
    seen = []
    with ray_seam.driver_printer(lambda data, printer: seen.append(data)):
        worker.print_to_stdstream({"pid": "raylet", "lines": ["x"]}, False)
    assert worker.print_to_stdstream is original and seen == [{"pid": "raylet", "lines": ["x"]}]


def test_the_search_generator_saves_its_experiment_and_the_gcs_its_autoscaler_config():
    from ray._private import state
    from ray.tune.experiment import Experiment
    from ray.tune.search.search_generator import SearchGenerator

    assert '"experiment": self._experiment' in inspect.getsource(SearchGenerator.get_state)
    assert '"storage": self.storage' in inspect.getsource(Experiment.__init__)
    assert callable(state.state.get_cluster_config)



def test_storage_made_under_own_staging_stages_in_a_folder_of_its_own(tmp_path):
    import re

    from ray.train._internal.storage import StorageContext

    # Ray Tune's staging folder on the node: SESSION/artifacts/<_timestamp>/<experiment folder name>
    assert "self._timestamp, self.experiment_dir_name" in inspect.getsource(StorageContext._get_session_path)

    def stamp():
        return StorageContext(storage_path=str(tmp_path), experiment_dir_name="tune")._timestamp

    with ray_seam.own_staging():
        first = stamp()
    with ray_seam.own_staging():
        second = stamp()
    second_only = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"
    assert re.fullmatch(rf"{second_only}_[0-9a-f]{{8}}", first) and first != second  # even within one second
    assert re.fullmatch(second_only, stamp())  # put back


def test_ray_tunes_actor_cache_keeps_up_to_the_slots_while_kept_actors_lasts():
    from ray.tune.utils.object_cache import _ObjectCache

    def filled():
        cache = _ObjectCache(may_keep_one=True)  # as Ray Tune's controller makes it
        kept = [cache.cache_object("1 CPU", actor) for actor in ("a", "b", "c")]  # no trial staged
        return cache, kept

    cache, kept = filled()
    assert kept == [True, False, False]  # Ray Tune alone: one idle actor, the others stopped
    with ray_seam.kept_actors(2):
        cache, kept = filled()
        assert kept == [True, True, False] and list(cache.flush_cached_objects()) == []
        cache.increase_max("1 CPU")  # a trial staged: it takes one of them
        assert cache.pop_cached_object("1 CPU") == "a" and cache.num_cached_objects == 1
        assert list(cache.flush_cached_objects(force_all=True)) == ["b"]  # the run is over: all stopped
    cache, _ = filled()
    assert cache.num_cached_objects == 1  # put back
