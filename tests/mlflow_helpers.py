"""Helpers for tests that run MLflow's own command line: servers and clean environments."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

#: The mlflow command of the interpreter running the tests.
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without MLflow settings inherited from the test session."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME")
    }
    env["OPENBLAS_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, log: Path) -> Iterator[str]:
    """Run ``mlflow server`` on a free localhost port; yield its URL once it is healthy."""
    port = free_port()
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [
                MLFLOW,
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                backend_uri,
                "--artifacts-destination",
                str(artifacts),
            ],
            env=clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, f"mlflow server exited: {log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(30)
