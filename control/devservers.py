"""Throwaway PostgreSQL and Redis servers on free local ports, for tests and benchmarks of the real stores.

`throwaway_postgres()` makes a fresh cluster (initdb) in a new temporary directory, starts it with pg_ctl on
127.0.0.1 and a free port (its unix socket in that directory), yields a DSN for the `postgres` superuser, and
stops it and deletes the directory afterwards. PostgreSQL refuses to run as root: as root, the cluster is
owned and run by the `postgres` system user, in a directory outside root's home. It trusts every local
connection and does not fsync: it holds throwaway data only.

`throwaway_redis()` does the same for `redis-server`, with persistence off, and yields a `redis://` URL.

`scratch_schema(dsn)` gives each test or benchmark run a schema of its own on one server (a DSN whose
`search_path` names it), dropped afterwards.

Missing server binaries are installed with apt-get when running as root on Debian (a fresh machine runs the
tests as root); otherwise the error says what to install.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from darktower.control.store import StoreError

_START_ATTEMPTS: Final = 5
"""A free port can be taken by someone else before the server binds it; then another one is tried."""
_REDIS_READY_TIMEOUT_S: Final = 10.0
_POSTGRES_SETTINGS: Final = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
    "shared_buffers=32MB",
)


class DevServerError(StoreError):
    """A throwaway server could not be installed, created or started; the message says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RestartableServer:
    """A throwaway server that a fault test can stop and start again on the same port with the same data:
    `url` stays valid across restarts."""

    def __init__(self, url: str, stop: Callable[[], None], start: Callable[[], None]) -> None:
        self.url = url
        self._stop = stop
        self._start = start
        self.running = True

    def stop(self) -> None:
        """Stops the server at once (clients see refused connections); a no-op when it is stopped."""
        if self.running:
            self._stop()
            self.running = False

    def start(self) -> None:
        """Starts the stopped server again, on the same port and data."""
        if not self.running:
            self._start()
            self.running = True


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster for the duration of the block; yields its DSN."""
    with restartable_postgres() as server:
        yield server.url


@contextlib.contextmanager
def restartable_postgres(*, crash_safe: bool = False) -> Iterator[RestartableServer]:
    """`throwaway_postgres`, as a server the caller may also stop and start. A stop is a crash (immediate
    shutdown); with `crash_safe`, commits are durable when acknowledged (`synchronous_commit=on`, as in
    production) so a test can check that nothing acknowledged is lost by one."""
    extra = ("synchronous_commit=on",) if crash_safe else ()
    bindir = _postgres_bindir()
    as_root = os.geteuid() == 0
    owner = _postgres_user() if as_root else None
    # mkdtemp makes a fresh 0700 directory; as root it goes in /tmp, which the postgres user can traverse.
    base = Path(tempfile.mkdtemp(prefix="darktower-pg-", dir="/tmp" if as_root else None))  # noqa: S108
    data = base / "data"
    try:
        if owner is not None:
            os.chown(base, owner.pw_uid, owner.pw_gid)
        base.chmod(0o700)
        _run(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(data),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            owner,
            base,
        )
        port = _start_postgres(bindir, data, base, owner, extra=extra)

        def stop() -> None:
            _run(
                [str(bindir / "pg_ctl"), "--pgdata", str(data), "--mode", "immediate", "--wait", "stop"],
                owner,
                base,
            )

        def start() -> None:
            _start_postgres(bindir, data, base, owner, port=port, extra=extra)

        server = RestartableServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", stop, start)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.asynccontextmanager
async def scratch_schema(dsn: str) -> AsyncIterator[str]:
    """A new schema on the server at `dsn` for the duration of the block; yields a DSN that uses it."""
    schema = f"scratch_{secrets.token_hex(8)}"
    await _admin(dsn, f'CREATE SCHEMA "{schema}"')
    try:
        parts = urlsplit(dsn)
        query = urlencode([*parse_qsl(parts.query), ("search_path", schema)])
        yield urlunsplit(parts._replace(query=query))
    finally:
        await _admin(dsn, f'DROP SCHEMA "{schema}" CASCADE')


async def _admin(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """A fresh redis-server (no persistence) for the duration of the block; yields its URL."""
    with restartable_redis() as server:
        yield server.url


@contextlib.contextmanager
def restartable_redis() -> Iterator[RestartableServer]:
    """`throwaway_redis`, as a server the caller may also stop and start (its data is lost on a stop)."""
    binary = shutil.which("redis-server") or _install("redis-server", "redis-server")
    base = Path(tempfile.mkdtemp(prefix="darktower-redis-"))
    try:
        redis = _RedisProcess(binary, base)
        for _ in range(_START_ATTEMPTS):
            port = free_port()
            if redis.start_on(port):
                break
        else:
            raise redis.failure()
        server = RestartableServer(f"redis://127.0.0.1:{port}/0", redis.stop, lambda: redis.restart(port))
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


class _RedisProcess:
    def __init__(self, binary: str, base: Path) -> None:
        self._binary = binary
        self._base = base
        self._process: subprocess.Popen[bytes] | None = None

    def start_on(self, port: int) -> bool:
        """True once it serves on `port`; False when it exited first (port taken)."""
        log = (self._base / "redis.log").open("ab")
        command = [self._binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self._base)]
        command += ["--save", "", "--appendonly", "no"]
        self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self._base)  # noqa: S603
        log.close()
        if _wait_for_redis(self._process, port):
            return True
        self._process.wait()
        return False

    def restart(self, port: int) -> None:
        if not self.start_on(port):
            raise self.failure()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def failure(self) -> DevServerError:
        log_text = (self._base / "redis.log").read_text(errors="replace")
        return DevServerError(f"redis-server did not start:\n{log_text[-2000:]}")


def _start_postgres(
    bindir: Path,
    data: Path,
    base: Path,
    owner: pwd.struct_passwd | None,
    *,
    port: int | None = None,
    extra: tuple[str, ...] = (),
) -> int:
    """Starts the cluster on `port`, or on a free port (tried a few times: another process may take it);
    `extra` settings override the defaults (the last of a setting wins)."""
    settings = " ".join(f"-c {setting}" for setting in (*_POSTGRES_SETTINGS, *extra))
    failure = ""
    chosen = port
    for _ in range(_START_ATTEMPTS if chosen is None else 1):
        port = chosen if chosen is not None else free_port()
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 {settings}"
        log = base / "postgres.log"
        command = [str(bindir / "pg_ctl"), "--pgdata", str(data), "--log", str(log), "--options", options]
        try:
            _run([*command, "--wait", "--timeout", "60", "start"], owner, base)
        except DevServerError as exc:
            failure = f"{exc}\n{log.read_text(errors='replace')[-2000:] if log.exists() else ''}"
            continue
        return port
    raise DevServerError(f"PostgreSQL did not start: {failure}")


def _wait_for_redis(process: subprocess.Popen[bytes], port: int) -> bool:
    """True once the server answers PING; False if it exits first (port taken)."""
    deadline = time.monotonic() + _REDIS_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.005)
    process.kill()
    return False


def _postgres_bindir() -> Path:
    found = _find_postgres_bindir()
    if found is None:
        _install("postgresql", "initdb")
        found = _find_postgres_bindir()
    if found is None:
        raise DevServerError("initdb and pg_ctl are not installed (Debian: apt-get install postgresql)")
    return found


def _find_postgres_bindir() -> Path | None:
    def major(path: Path) -> int:
        name = path.parent.parent.name
        return int(name) if name.isdigit() else 0

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=major, reverse=True)
    for initdb in debian:
        if (initdb.parent / "pg_ctl").exists():
            return initdb.parent
    initdb_on_path = shutil.which("initdb")
    if initdb_on_path is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb_on_path).resolve().parent
    return None


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise DevServerError(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as "
            "(Debian's postgresql package creates one)"
        ) from None


def _install(package: str, binary: str) -> str:
    """Installs a Debian package (as root) and returns the path of `binary`; DevServerError if impossible."""
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or apt_get is None:
        raise DevServerError(
            f"{binary} is not installed; install the {package} package (Debian: apt-get install {package})"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock_wait = ["-o", "DPkg::Lock::Timeout=300"]
    for command in (
        [apt_get, *lock_wait, "update", "-qq"],
        [apt_get, *lock_wait, "install", "-y", "-qq", package],
    ):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # noqa: S603
        if result.returncode != 0:
            raise DevServerError(f"{' '.join(command)} failed: {result.stderr.strip()[-2000:]}")
    return shutil.which(binary) or binary


def _run(command: list[str], owner: pwd.struct_passwd | None, cwd: Path) -> None:
    """Runs `command` (as `owner` when given: the caller is root) and raises DevServerError on failure."""
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        command,
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        user=owner.pw_uid if owner is not None else None,
        group=owner.pw_gid if owner is not None else None,
        extra_groups=[] if owner is not None else None,
        env={**os.environ, "HOME": str(cwd)} if owner is not None else None,
    )
    if result.returncode != 0:
        raise DevServerError(
            f"{Path(command[0]).name} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
