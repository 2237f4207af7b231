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
    assert "chmod 700 ~/.ray && chmod 600 ~/.ray/auth_token" in config["setup_commands"]  # the copied token stays private
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])  # as tests/search/test_job.py starts it


def test_the_cluster_extra_brings_the_job_client_and_the_job_server():
    (cluster,) = [line for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.startswith("cluster = [")]
    assert '"ray[default]>=' in cluster  # `ray job submit` on a laptop, the dashboard and job server on the head


def test_schema_catches_a_broken_config():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["max_workers"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, SCHEMA)
