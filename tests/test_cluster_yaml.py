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


def test_schema_catches_a_broken_config():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    config["max_workers"] = "many"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, SCHEMA)
