"""cluster.yaml and cluster-local.yaml against the JSON schema that Ray's launcher ships."""

import json
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@pytest.mark.parametrize("name, provider", [("cluster.yaml", "aws"), ("cluster-local.yaml", "local")])
def test_cluster_config_is_valid_for_rays_launcher(name, provider):
    config = yaml.safe_load((ROOT / name).read_text())
    jsonschema.validate(config, SCHEMA)
    assert config["provider"]["type"] == provider
    assert config["head_node_type"] in config["available_node_types"]
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in starts and "disabled" not in starts
    assert "--dashboard-host=0.0.0.0" not in starts
    assert any('pip install -e "$HOME/vae-search[cluster]"' in c for c in config["setup_commands"])
    assert (
        "chmod 700 ~/.ray && chmod 600 ~/.ray/auth_token" in config["setup_commands"]
    )  # the copied token stays private
    assert "--dashboard-host=127.0.0.1" in " ".join(
        config["head_start_ray_commands"]
    )  # as tests/search/test_job.py starts it


def test_the_cluster_extra_brings_the_job_client_and_the_job_server():
    (cluster,) = [line for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.startswith("cluster = [")]
    assert '"ray[default]==' in cluster  # `ray job submit` on a laptop, the dashboard and job server on the head


def test_schema_catches_a_broken_config():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["max_workers"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, SCHEMA)


def test_the_aws_cluster_boots_rays_image_of_the_ray_and_python_the_project_installs():
    import re

    import tomllib
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py3(\d+)-gpu", config["docker"]["image"])
    assert match, config["docker"]["image"]  # pinned: a release and a Python, never latest or nightly
    ray_version, python = match.group(1), f"3.{match.group(2)}"
    requirements = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["cluster"]]
    for requirement in requirements:
        if requirement.name == "ray":
            assert requirement.specifier.contains(ray_version), (str(requirement), ray_version)
    (pin,) = [r for r in map(Requirement, project["optional-dependencies"]["cluster"]) if r.name == "ray"]
    assert str(pin.specifier) == f"=={ray_version}"  # the laptop's client is the image's Ray
    assert SpecifierSet(project["requires-python"]).contains(f"{python}.0")
    # GPUs passed into the workers' containers; every node on AWS's Deep Learning Base GPU AMI
    assert "--gpus all" in config["docker"]["worker_run_options"]
    for node in config["available_node_types"].values():
        assert node["node_config"]["ImageId"].startswith(
            "resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu"
        )
    # the project installs into the image's Python; the token and the storage lines as before
    assert any('pip install -e "$HOME/vae-search[cluster]"' in c for c in config["setup_commands"])
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "--storage s3://" in (ROOT / "cluster.yaml").read_text()
