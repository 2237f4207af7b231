"""`vae-search check`: what every node of a cluster can do, asked before a paid run.

`probe_node` runs as one small Ray task pinned to each alive node (no CPU asked, so a busy or
CPU-less head answers too): its host, resources, Python, Ray, torch and CUDA, and whether it can
read the driver's probe in the run's storage and write, read back and delete one of its own.
`problems` turns the answers into one line per thing that would make a run with the given
settings fail; `table` lays them out. Nothing stays in the storage: every probe is deleted.
"""

from __future__ import annotations

import contextlib
import platform
import uuid
from dataclasses import asdict, dataclass
from typing import Any

PROBE_PREFIX = ".vae-search-check-"
TASK_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class NodeReport:
    node: str  # Ray's node id (its first 8 characters in messages)
    host: str
    cpus: float  # what Ray schedules on the node
    gpus: float
    memory_gb: float
    python: str
    ray: str
    torch: str
    torch_cuda: str | None  # the CUDA torch was built for; None for a CPU build
    cuda_problem: str | None  # why torch cannot use CUDA there; None when it can
    device_name: str | None
    storage: str | None  # what failed with the storage from that node; None when it worked

    @property
    def name(self) -> str:
        return f"{self.host} ({self.node[:8]})"


def probe_node(
    node: str, cpus: float, gpus: float, memory_bytes: float, storage: str | None, driver_probe: str | None
) -> dict:
    """Runs on the node (a Ray task): its report as a dict."""
    from importlib.metadata import version

    import torch

    from search.engine.trial import cuda_problem

    problem = cuda_problem() if gpus else None
    name = torch.cuda.get_device_name(0) if gpus and problem is None else None
    return asdict(NodeReport(
        node=node, host=platform.node(), cpus=cpus, gpus=gpus, memory_gb=round(memory_bytes / 2**30, 1),
        python=platform.python_version(), ray=version("ray"), torch=torch.__version__, torch_cuda=torch.version.cuda,
        cuda_problem=problem, device_name=name, storage=_probe_storage(storage, driver_probe) if storage else None,
    ))


def _probe_storage(storage: str, driver_probe: str | None) -> str | None:
    """None when this node sees the driver's probe and can write, read and delete a file of its own."""
    from search.store.storage import filesystem, join, read_bytes

    try:
        if driver_probe is not None and read_bytes(join(storage, driver_probe)) is None:
            return (
                "the driver's probe is not there: this node sees another folder (use one every node mounts, or s3://)"
            )
        name = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        fs, path = filesystem(join(storage, name))
        with fs.open_output_stream(path) as handle:
            handle.write(name.encode())
        back = read_bytes(join(storage, name))
        fs.delete_file(path)
        return None if back == name.encode() else "a file written there read back different"
    except Exception as exc:  # noqa: BLE001 (what the store said is the message)
        return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def problems(reports: list[NodeReport], *, client: dict[str, str], cpus_per_trial: float, gpus_per_trial: float,
             storage: str | None, autoscaled: bool, missing: list[str]) -> tuple[list[str], list[str]]:
    """(problems, notes): one line per thing that would make a run fail; notes say what is fine
    for now (workers an autoscaler has not started yet)."""
    found, notes = [], []
    for node in missing:
        found.append(f"node {node}: did not answer within {TASK_TIMEOUT_S:g} s")
    for r in reports:
        if (r.python.rsplit(".", 1)[0], r.ray) != (client["python"].rsplit(".", 1)[0], client["ray"]):
            found.append(
                f"node {r.name}: Python {r.python} and Ray {r.ray}, but this client has Python {client['python']} "
                f"and Ray {client['ray']} (Ray needs the same Ray and Python minor version everywhere)"
            )
        if gpus_per_trial and r.gpus and r.cuda_problem:
            found.append(f"node {r.name}: CUDA unusable: {r.cuda_problem}")
        if r.storage:
            found.append(f"node {r.name}: --storage {storage} unusable: {r.storage}")
    fits = [r for r in reports if r.cpus >= cpus_per_trial and (not gpus_per_trial or r.gpus >= min(gpus_per_trial, 1))]
    if not fits:
        wanted = f"{cpus_per_trial:g} CPU" + (f" and {gpus_per_trial:g} GPU" if gpus_per_trial else "")
        if autoscaled:
            notes.append(f"no node that fits a trial ({wanted}) is up yet: the cluster autoscales, and a run asks its "
                         "autoscaler for one such bundle per trial it can use")
        else:
            what = (
                "no GPU node for --gpus-per-trial"
                if gpus_per_trial and not any(r.gpus for r in reports)
                else "no node fits"
            )
            found.append(f"{what}: a trial asks for {wanted}, the nodes have "
                         + ", ".join(f"{r.cpus:g} CPU/{r.gpus:g} GPU" for r in reports))
    return found, notes


def table(reports: list[NodeReport], *, storage_probed: bool = False) -> str:
    """One row per node."""
    import pandas as pd

    rows = [
        {
            "node": r.name,
            "CPU": f"{r.cpus:g}",
            "GPU": f"{r.gpus:g}",
            "memory": f"{r.memory_gb:g} GB",
            "python": r.python,
            "ray": r.ray,
            "torch": r.torch,
            "cuda": r.torch_cuda or "cpu build",
            "cuda usable": "-" if not r.gpus else ("yes" if r.cuda_problem is None else "no"),
            "device": r.device_name or "-",
            "storage": "no" if r.storage else "yes" if storage_probed else "-",
        }
        for r in reports
    ]
    return pd.DataFrame(rows).to_string(index=False)


def check_cluster(
    *, cpus_per_trial: float, gpus_per_trial: float, storage: str | None
) -> tuple[list[NodeReport], list[str], list[str]]:
    """Probe every alive node of the Ray this process is connected to: (reports, problems, notes)."""
    from importlib.metadata import version

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from search.engine.ray_seam import autoscaled
    from search.store.storage import filesystem

    driver_probe, fs, created = None, None, None
    if storage:
        driver_probe = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        try:
            fs, folder = filesystem(storage)
            path = f"{folder}/{driver_probe}"
            created = _first_missing(fs, folder)
            if created is not None:  # the run would create the folder: so does the check, until it ends
                fs.create_dir(folder, recursive=True)
            with fs.open_output_stream(path) as handle:
                handle.write(b"driver")
        except Exception as exc:  # noqa: BLE001
            from vae.errors import UsageError

            with contextlib.suppress(OSError):  # what failed is the message; a folder it made is removed if it can be
                _remove(fs, created)
            raise UsageError(
                f"--storage {storage} cannot be written from here: {' '.join(str(exc).split())[:200]}"
            ) from None
    try:
        task = ray.remote(num_cpus=0)(probe_node)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        pending = {
            task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
                n["NodeID"],
                n["Resources"].get("CPU", 0.0),
                n["Resources"].get("GPU", 0.0),
                n["Resources"].get("memory", 0.0),
                storage,
                driver_probe,
            ): n["NodeID"]
            for n in nodes
        }
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=TASK_TIMEOUT_S)
        reports = sorted((NodeReport(**ray.get(ref)) for ref in ready), key=lambda r: (r.host, r.node))
        missing = [pending[ref][:8] for ref in late]
    finally:
        if driver_probe is not None:
            try:
                fs.delete_file(path)
            except Exception:  # noqa: BLE001 (reported by the nodes' probes already)
                pass
            _remove(fs, created)
    client = {"python": platform.python_version(), "ray": version("ray")}
    found, notes = problems(reports, client=client, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                            storage=storage, autoscaled=autoscaled(), missing=missing)
    return reports, found, notes


def _first_missing(fs, path: str) -> str | None:
    """The outermost folder of `path` that does not exist yet (`path` itself, or one above it), or None."""
    import pyarrow.fs

    missing = None
    while path and fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        missing, path = path, path.rpartition("/")[0]
    return missing


def _remove(fs, created: str | None) -> None:
    """Remove the folders the check created for its probes once they hold nothing else (an object
    store may have left empty markers for them when the probes were deleted)."""
    import pyarrow.fs

    if fs is None or created is None or ("/" not in created and type(fs).__name__ != "LocalFileSystem"):
        return  # nothing made, or a bucket (a run never creates one)
    inside = fs.get_file_info(pyarrow.fs.FileSelector(created, recursive=True, allow_not_found=True))
    if all(info.type == pyarrow.fs.FileType.Directory for info in inside):
        fs.delete_dir(created)


def as_json(reports: list[NodeReport], found: list[str], notes: list[str]) -> dict[str, Any]:
    return {"ok": not found, "nodes": [asdict(r) for r in reports], "problems": found, "notes": notes}
