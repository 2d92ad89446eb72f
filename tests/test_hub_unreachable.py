"""A hub that accepts connections and never answers, and one that refuses them: `l0eval download`
ends with one line naming the endpoint instead of hanging (every hub request has a connect and a
read timeout; l0eval.hub_http)."""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parent.parent


@pytest.fixture
def silent_hub():
    """http://127.0.0.1:PORT: accepts every connection, reads nothing, answers nothing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def refused_endpoint() -> str:
    """An address nothing listens on: bound, then closed."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


def download(tmp_path, endpoint: str) -> subprocess.CompletedProcess:
    family = tmp_path / "hub.yaml"
    family.write_text(yaml.safe_dump({"name": "hub-family", "kind": "saes", "d_in": 4,
                                      "members": [{"repo_id": "org/repo", "path": "layer_0"}]}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint,
           "HF_HUB_CACHE": str(tmp_path / "hf-cache"), "L0EVAL_CACHE": str(tmp_path / "cache"),
           "HF_HUB_ETAG_TIMEOUT": "1", "HF_HUB_DOWNLOAD_TIMEOUT": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    # the bound is only against a hang: the command itself gives up after its 1 s timeouts
    return subprocess.run([sys.executable, "-m", "l0eval.cli", "download", "--family", str(family)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_a_hub_that_never_answers_is_one_line_naming_the_endpoint(tmp_path, silent_hub):
    done = download(tmp_path, silent_hub)
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = done.stderr.splitlines()
    assert line.startswith("l0eval: error: ") and silent_hub in line and "org/repo/layer_0" in line, line


def test_a_hub_that_refuses_connections_is_one_line_naming_the_endpoint(tmp_path):
    endpoint = refused_endpoint()
    done = download(tmp_path, endpoint)
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = done.stderr.splitlines()
    assert line.startswith("l0eval: error: ") and endpoint in line, line
