"""The token that guards a local Ray: written private, and a client without it refused."""

import os
import stat
import subprocess
import sys
import uuid

import pytest

from search.engine.session import private_token
from tests.search.helpers import kill_session


def test_a_token_the_user_wrote_is_made_private(tmp_path, monkeypatch):
    # the usual umask: the user's ~/.ray/auth_token readable by all, in a folder all can enter
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    (tmp_path / ".ray").mkdir(mode=0o755)
    (tmp_path / ".ray" / "auth_token").write_text(uuid.uuid4().hex)
    (tmp_path / ".ray" / "auth_token").chmod(0o644)
    assert private_token() == tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE((tmp_path / ".ray" / "auth_token").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / ".ray").stat().st_mode) == 0o700


def test_a_token_path_the_user_chose_keeps_its_folder_and_no_token_is_no_change(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(folder / "token"))
    assert private_token() is None  # nothing written yet: nothing to protect
    (folder / "token").write_text(uuid.uuid4().hex)
    assert private_token() == folder / "token"
    assert stat.S_IMODE((folder / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # the user's own folder, left as it is


@pytest.mark.slow  # one local Ray, for every check that needs Ray itself
def test_local_ray_writes_its_token_private_and_refuses_a_client_without_it(tmp_path):
    # a driver in a home without ~/.ray (Ray writes the token there), in a process of its own:
    # Ray keeps the token it read for the life of a process, and this one goes on to other tests
    code = (
        "import sys, ray\nfrom search.config import SearchConfig\nfrom search.engine.session import driver_session\n"
        "with driver_session(SearchConfig(num_cpus=1), None):\n"
        "    print(ray.get_runtime_context().gcs_address, flush=True)\n    sys.stdin.read()\n"
        "print('DOWN', ray.is_initialized())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
    driver = subprocess.Popen([sys.executable, "-c", code], env={**env, "HOME": str(tmp_path)}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        address = driver.stdout.readline().strip()
        token = tmp_path / ".ray" / "auth_token"
        assert address and token.is_file(), driver.stderr.read()[-3000:] if not address else "no token written"
        assert stat.S_IMODE(token.stat().st_mode) == 0o600 and stat.S_IMODE(token.parent.stat().st_mode) == 0o700
        client = (
            "import ray, sys\ntry:\n    ray.init(address=sys.argv[1], logging_level='ERROR')\n    print('CONNECTED')\n"
            "except Exception as exc:\n    print('REFUSED', type(exc).__name__)"
        )
        # clients as the driver's session runs them (token mode on); a refused one retries for 20 s
        # by default, and one try says the same
        env.update(RAY_AUTH_MODE="token", RAY_gcs_server_port_wait_time_s="1")
        clients = {
            name: subprocess.Popen(
                [sys.executable, "-c", client, address],
                env={**env, "RAY_AUTH_TOKEN": value},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, value in (("stranger", "not-the-token"), ("owner", token.read_text().strip()))
        }  # side by side
        (stranger, _), (owner, owner_err) = (process.communicate(timeout=180) for process in clients.values())
        assert "REFUSED" in stranger, stranger
        assert "CONNECTED" in owner, owner + owner_err[-2000:]  # the token, not something else, decides
        stdout, stderr = driver.communicate("", timeout=120)
        assert "DOWN False" in stdout, stderr[-2000:]  # the session shut down the Ray it started
    finally:
        kill_session(driver.pid)
        driver.wait()
