"""A private, throw-away PostgreSQL cluster for tests: own data dir, own socket dir, loopback only.

Usage: ``with PgCluster.start() as pg: url = pg.create_db("optuna")`` (skip the test first when
``pg_bin()`` is None). The cluster is stopped and its folder removed on exit, even on failure.

PostgreSQL refuses to run as root, so under root every server command runs as the ``postgres``
system user (``runuser -u postgres --``) in a folder that user owns; as any other user it runs
directly. Authentication is ``trust``: the server listens on 127.0.0.1 and its own socket only.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from servers import free_port

SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/usr/pgsql-*/bin")
SUPERUSER = "postgres"
START_TIMEOUT_S = 60


def pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl (newest version first), or None when not installed."""
    env = os.environ.get("PG_BIN")
    candidates = [Path(env)] if env else []
    for pattern in SEARCH:
        candidates += sorted(Path("/").glob(pattern.lstrip("/")), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def _runner() -> tuple[list[str], int | None, int | None]:
    """Command prefix and (uid, gid) owning the cluster's folder: postgres under root, else nobody."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        return [], None, None  # no postgres user: initdb will refuse root and the caller sees why
    return ["runuser", "-u", "postgres", "--"], user.pw_uid, user.pw_gid


@dataclass
class PgCluster:
    bin: Path
    root: Path  # holds data/, sock/ and server.log
    port: int
    prefix: list[str]

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, db: str = "postgres") -> str:
        """SQLAlchemy URL naming the psycopg (v3) driver: a bare ``postgresql://`` means psycopg in
        SQLAlchemy 2.1 but psycopg2 in 2.0, so the explicit form works with both."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        done = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{log}")

    def create_db(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        import psycopg

        # autocommit: CREATE DATABASE cannot run inside a transaction
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        # immediate: no checkpoint, the folder is deleted next anyway
        subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=START_TIMEOUT_S)

    @classmethod
    @contextmanager
    def start(cls) -> Iterator[PgCluster]:
        """initdb + pg_ctl start in a fresh folder under the system temp dir (pytest's tmp_path is
        root-only, unreadable for the postgres user); stop and delete it on exit."""
        binary = pg_bin()
        if binary is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        prefix, uid, gid = _runner()
        root = Path(tempfile.mkdtemp(prefix="batchout-pg-"))
        if uid is not None:
            os.chown(root, uid, gid)
        cluster = cls(binary, root, free_port(), prefix)
        try:
            cluster._run(str(binary / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER, "-A", "trust",
                         "--no-sync", "-E", "UTF8")
            cluster._run("mkdir", str(root / "sock"))
            # fsync off: a test cluster need not survive a power cut, and it halves commit latency
            opts = (f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {root / 'sock'} -c fsync=off "
                    "-c synchronous_commit=off -c max_connections=50")
            cluster._run(str(binary / "pg_ctl"), "-D", str(root / "data"), "-l", str(cluster.log), "-o", opts,
                         "-w", "-t", str(START_TIMEOUT_S), "start")
            yield cluster
        finally:
            cluster.stop()
            shutil.rmtree(root, ignore_errors=True)
