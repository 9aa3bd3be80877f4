"""A throwaway PostgreSQL for the pipeline's `database: postgres`, without set-up:

    python -m bench.postgres start   # make postgres
    python -m bench.postgres stop    # make postgres-stop

`start` runs the distribution's server binaries (the newest /usr/lib/postgresql/<version>/bin,
else `initdb` on PATH) on a free loopback port, trusting local connections and without fsync,
writes its DSN to .pg/dsn in the working directory (the harness reads it when neither
workload.dsn nor $HARNESS_POSTGRES_DSN is given, harness.core.postgres) and prints it. With the
cluster running it only prints the DSN. `stop` stops the server and removes its files and .pg/.

The cluster lives in a folder of its own under the system temp dir, whose path .pg/cluster
keeps: initdb refuses to run as root, so as root the server runs as the `postgres` user
(runuser), which must own its data and reach it — a clone under a 0700 folder (/root, /work)
is out of its reach. The temp dir is also short enough for the server's Unix socket path.

Exits 0 on success, 2 when the binaries (or, as root, the postgres user) are missing, 1 when
the server cannot be started or stopped; each failure is one line on stderr."""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.core.postgres import FILE, FOLDER

ROOTS = Path("/usr/lib/postgresql")  # Debian and Ubuntu: one <version>/bin per version
CLUSTER = FOLDER / "cluster"
PREFIX = "harness-pg-"  # only folders named so are ever removed (.pg/cluster could be edited)
USER = "postgres"
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
fsync = off
"""


class Refused(Exception):
    """Why the cluster cannot be started or stopped, in one line; `status` is the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: the newest version under ROOTS, else PATH's."""

    def version(path: Path) -> tuple[int, ...]:
        parts = path.parent.name.split(".")
        return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)

    found = sorted((p for p in ROOTS.glob("*/bin") if (p / "initdb").exists()), key=version,
                   reverse=True) if ROOTS.is_dir() else []
    on_path = shutil.which("initdb")
    return found[0] if found else Path(on_path).parent if on_path else None


def _as_server(*cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
    try:
        return subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Refused(f"{Path(cmd[0]).name} {cmd[1]}: no answer in {timeout:.0f} s") from None


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr + result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _recorded() -> Path | None:
    """The cluster folder .pg/cluster names, when it is one of ours."""
    try:
        base = Path(CLUSTER.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return None
    return base if base.is_absolute() and base.name.startswith(PREFIX) else None


def running(bin_dir: Path) -> str | None:
    """The DSN of the cluster .pg/ records, when its server is up."""
    base = _recorded()
    if base is None or not FILE.exists():
        return None
    if _as_server(str(bin_dir / "pg_ctl"), "status", "-D", str(base / "data")).returncode:
        return None
    return FILE.read_text(encoding="utf-8").strip() or None


def _forget(base: Path | None) -> None:
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(FOLDER, ignore_errors=True)


def _start_server(bin_dir: Path, base: Path) -> str:
    """initdb and pg_ctl start in `base` (the postgres user's when root): the DSN."""
    data = base / "data"
    init = _as_server(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER,
                      "--no-sync")
    if init.returncode:
        raise Refused(f"initdb failed: {_last_line(init)}")
    port = _free_port()
    with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:  # later lines win
        conf.write(SETTINGS.format(port=port, sockets=base))
    start = _as_server(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"),
                       "-w", "-t", "60", "start")
    if start.returncode:
        log = base / "log"
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        raise Refused(f"pg_ctl start failed: {tail[0] if tail else _last_line(start)}")
    return f"postgresql://{USER}@127.0.0.1:{port}/postgres"


def start() -> str:
    """The DSN of the running cluster, started first when it is not."""
    bin_dir = binaries()
    if bin_dir is None:
        raise Refused(f"no PostgreSQL server binaries (initdb) under {ROOTS}/*/bin or on PATH: "
                      "install the package postgresql (Debian: apt-get install postgresql)", 2)
    if (dsn := running(bin_dir)) is not None:
        return dsn
    if (old := _recorded()) is not None:  # its server is gone (a reboot, a kill): a fresh one
        _stop_server(bin_dir, old)  # in case `status` could not tell
        _forget(old)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(USER)
        except KeyError:
            raise Refused(f"as root the server runs as the user {USER}, which does not exist: "
                          "install the package postgresql", 2) from None
    base = Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        if os.geteuid() == 0:
            shutil.chown(base, USER)
        dsn = _start_server(bin_dir, base)
    except BaseException:
        _stop_server(bin_dir, base)
        shutil.rmtree(base, ignore_errors=True)
        raise
    FOLDER.mkdir(exist_ok=True)
    CLUSTER.write_text(f"{base}\n", encoding="utf-8")
    FILE.write_text(f"{dsn}\n", encoding="utf-8")  # last: .pg/dsn names a server that is up
    return dsn


def _stop_server(bin_dir: Path, base: Path) -> subprocess.CompletedProcess | None:
    if not (base / "data" / "postmaster.pid").exists():
        return None
    # -w: returns once the server and all its processes have exited
    return _as_server(str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w",
                      "-t", "60", "stop")


def stop() -> bool:
    """Stop the cluster .pg/ records and remove it and .pg/: whether there was one."""
    base = _recorded()
    if base is None:
        existed = FOLDER.exists()
        _forget(None)
        return existed
    bin_dir = binaries()
    if bin_dir is None and (base / "data" / "postmaster.pid").exists():
        raise Refused("no pg_ctl to stop the server with: install the package postgresql", 2)
    result = _stop_server(bin_dir, base) if bin_dir is not None else None
    if result is not None and result.returncode and running(bin_dir) is not None:
        raise Refused(f"pg_ctl stop failed: {_last_line(result)}")
    _forget(base)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.postgres",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(start())
        elif not stop():
            print("no cluster in .pg/: nothing to stop")
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
