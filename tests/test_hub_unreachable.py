"""A hub that accepts connections and never answers, one that answers only a retry, and one that
refuses connections: `l0eval download` ends with one line naming the endpoint instead of hanging, and
a request whose answer timed out is sent again (every hub request has a connect and a read timeout,
and retries; l0eval.hub_http)."""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx2
import pytest
import yaml

from l0eval.hub_http import READ_RETRY_DELAYS, bounded_client

REPO = Path(__file__).parent.parent
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class FakeHub:
    """http://127.0.0.1:PORT, answering its n-th connection with ``answers[n]`` (the last one repeated);
    None answers nothing, ever. ``requests`` holds each connection's request line."""

    def __init__(self, answers: list[bytes | None]):
        self.answers, self.requests, self.held = answers, [], []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self.stop.is_set():
            try:
                connection = self.server.accept()[0]
            except OSError:
                continue
            self.held.append(connection)
            answer = self.answers[min(len(self.requests), len(self.answers) - 1)]
            self.requests.append(self._request_line(connection))
            if answer is not None:
                connection.sendall(answer)

    @staticmethod
    def _request_line(connection: socket.socket) -> str:
        connection.settimeout(5)
        received = b""
        while b"\r\n" not in received:
            chunk = connection.recv(4096)
            if not chunk:
                break
            received += chunk
        return received.split(b"\r\n")[0].decode("latin-1")

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for connection in self.held:
            connection.close()
        self.server.close()


@pytest.fixture
def fake_hub():
    """A function making FakeHubs, each closed after the test."""
    hubs = []
    yield lambda answers: hubs.append(FakeHub(answers)) or hubs[-1]
    for hub in hubs:
        hub.close()


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


def test_a_hub_that_never_answers_is_one_line_naming_the_endpoint_after_the_retries(tmp_path, fake_hub):
    hub = fake_hub([None])
    done = download(tmp_path, hub.url)
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = done.stderr.splitlines()
    assert line.startswith("l0eval: error: ") and hub.url in line and "org/repo/layer_0" in line, line
    asked = [request for request in hub.requests if "org/repo" in request]
    assert len(asked) == 1 + len(READ_RETRY_DELAYS) and len(set(asked)) == 1, hub.requests  # the same GET again


def test_a_request_whose_answer_timed_out_is_sent_again_and_then_answered(fake_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)
    monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)
    with bounded_client() as client:
        hub = fake_hub([None, OK])  # silent on the first connection, answers the second
        assert client.get(f"{hub.url}/api/models/org/repo").text == "ok"
        assert hub.requests == ["GET /api/models/org/repo HTTP/1.1"] * 2
        never = fake_hub([None])
        with pytest.raises(httpx2.ReadTimeout):  # an upload is not sent twice
            client.post(f"{never.url}/api/upload", content=b"x")
        assert never.requests == ["POST /api/upload HTTP/1.1"]


def test_a_hub_that_refuses_connections_is_one_line_naming_the_endpoint(tmp_path):
    endpoint = refused_endpoint()
    done = download(tmp_path, endpoint)
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = done.stderr.splitlines()
    assert line.startswith("l0eval: error: ") and endpoint in line, line
