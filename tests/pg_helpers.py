"""PostgreSQL for tests: a fresh database per use, and a TCP proxy that can cut it off.

The server is the machine's own on 127.0.0.1:5432 (trust auth). A test that needs it
and cannot reach it fails with the reason; it never skips.
"""

import contextlib
import select
import socket
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
ADMIN_URL = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"


def admin_connection() -> psycopg.Connection:
    """An autocommit connection to the ``test`` database, or a loud failure."""
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        pytest.fail(
            f"PostgreSQL at {PG_HOST}:{PG_PORT} is needed by this test and is not reachable "
            f"({err}); start it with: pg_ctlcluster --skip-systemctl-redirect "
            "$(ls /etc/postgresql) main start",
            pytrace=False,
        )


@contextlib.contextmanager
def fresh_database(prefix: str) -> Iterator[str]:
    """Create an empty database; yield its name; drop it (and its connections) after."""
    name = f"rectune_{prefix}_{uuid.uuid4().hex[:10]}"
    with admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(name: str, *, password: str | None = None, port: int = PG_PORT) -> str:
    secret = f":{password}" if password else ""
    return f"postgresql://postgres{secret}@{PG_HOST}:{port}/{name}"


def query(name: str, sql: str) -> list[tuple]:
    with psycopg.connect(database_url(name), autocommit=True) as connection:
        return connection.execute(sql).fetchall()


class CuttableProxy:
    """Forwards a local port to PostgreSQL until :meth:`cut`; :meth:`restore` reopens it.

    Cutting closes the listening socket and every open connection, as when the network
    to the database goes down; until restored, new connections are refused.
    """

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind((PG_HOST, 0))
            self.port = probe.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((PG_HOST, self.port))
        listener.listen(32)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [listener, *sockets]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection((PG_HOST, PG_PORT))
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            a.close()
            b.close()
