"""A free-threaded CPython in the clone, for the interpreter axis, without set-up:

    python -m bench.python_ft   # make python-ft

builds CPython 3.14 with `./configure --disable-gil --with-ensurepip=install` into
.pythons/cpython-<version>t/ (git-ignored), whose bin/python3.<minor>t is the interpreter;
venvs with pip can be made from it. With such a build already there, and its interpreter
answering `sys._is_gil_enabled()` with False, it only prints the build's path and version.

The source is the upstream tarball inside Debian's source package (the .orig.tar.xz), checked
against the .dsc's Checksums-Sha256 (a mismatch is refused); Debian's patches are not applied
(the debian.tar.xz is downloaded with it but never unpacked). apt fetches it,
`apt-get source --download-only`, under a private configuration in .pythons/apt/ (its own
sources.list for sid, forky, trixie and experimental, its own lists and cache, every path passed
with -o Dir::...), so the system's apt sources never change. The versions `apt-cache showsrc`
lists are tried newest first; when no python3.14 source can be downloaded, the newest python3.13
that can is built instead, and one line on stderr says so.

Not built with --enable-optimizations: PGO runs the test suite under instrumentation, well past
10 minutes on a 2-core machine, where the plain build takes a few minutes.

The build's -dev dependencies missing from dpkg's database are installed with apt-get (the
system's sources), after a line naming them; that needs root. Exits 0 on success, 2 when a
prerequisite is missing (not root, no apt), 1 when a download, the checksum or the build fails;
each failure is one line on stderr, naming the log under .pythons/ that holds the details."""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(".pythons")
PACKAGES = ("python3.14", "python3.13")  # the wanted series first, then its fallback
MIRROR = "http://deb.debian.org/debian"
SUITES = ("sid", "forky", "trixie", "experimental")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEV_PACKAGES = ("build-essential", "pkg-config", "libssl-dev", "zlib1g-dev", "libffi-dev",
                "libbz2-dev", "liblzma-dev", "libsqlite3-dev", "libreadline-dev", "uuid-dev",
                "libncurses-dev", "libgdbm-dev")
PROBE = "import sys; print(sys._is_gil_enabled())"
JOBS = 2


class Refused(Exception):
    """Why no interpreter could be built, in one line; `status` is the exit code."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def say(line: str) -> None:
    print(line, flush=True)  # make pipes stdout: progress shows as it happens


# ---- the interpreter already built --------------------------------------------------------------

def gil_disabled(python: Path) -> bool:
    """Whether `python` runs and says its GIL is off."""
    try:
        result = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True,
                                timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and result.stdout.strip() == "False"


def prefix_version(prefix: Path) -> str:
    """The CPython version in a prefix's name: cpython-3.13.15t -> 3.13.15."""
    return prefix.name.removeprefix("cpython-").removesuffix("t")


def built(root: Path) -> Path | None:
    """The interpreter of a finished build under `root`: the newest that runs without a GIL."""
    debian_order = functools.cmp_to_key(compare_versions)
    found = sorted(root.glob("cpython-*t/bin/python3.*t"),
                   key=lambda python: debian_order(prefix_version(python.parents[1])),
                   reverse=True)
    return next((python for python in found if gil_disabled(python)), None)


# ---- the build's dependencies -------------------------------------------------------------------

def dpkg_status(package: str) -> str:
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL).stdout
    except OSError:
        raise Refused("dpkg-query not found: building needs a Debian system (apt, dpkg)", 2) \
            from None


def missing_packages(packages: Iterable[str], status: Callable[[str], str]) -> list[str]:
    """The packages dpkg does not list as installed."""
    return [p for p in packages if status(p).strip() != "install ok installed"]


def install_packages(packages: list[str], log: Path) -> None:
    """apt-get install from the system's sources, after one `apt-get update` when it fails."""
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if run_logged(command, log, env=env) == 0:
        return
    if run_logged(["apt-get", "update"], log, env=env) or run_logged(command, log, env=env):
        raise Refused(f"apt-get install {' '.join(packages)} failed: see {log}", 2)


def ensure_dependencies(log: Path, status: Callable[[str], str] = dpkg_status,
                        install: Callable[[list[str], Path], None] = install_packages,
                        is_root: bool | None = None) -> list[str]:
    """Install the missing -dev packages: those it installed."""
    missing = missing_packages(DEV_PACKAGES, status)
    if not missing:
        return []
    if not (os.geteuid() == 0 if is_root is None else is_root):
        raise Refused(f"the build needs {' '.join(missing)}, not installed, and only root can "
                      f"install them: apt-get install {' '.join(missing)}", 2)
    if shutil.which("apt-get") is None:
        raise Refused(f"the build needs {' '.join(missing)}, and there is no apt-get", 2)
    say(f"installing the build's missing dependencies with apt-get: {' '.join(missing)}")
    install(missing, log)
    return missing


# ---- the source: Debian's source package, through a private apt ---------------------------------

def sources_list(suites: Iterable[str] = SUITES) -> str:
    return "".join(f"deb-src [signed-by={KEYRING}] {MIRROR} {suite} main\n" for suite in suites)


def apt_options(apt_dir: Path) -> list[str]:
    """apt's -o options pointing every source list, index and cache at `apt_dir` alone."""
    apt_dir = apt_dir.resolve()  # apt reads a relative Dir::Etc::* under /etc/apt
    settings = {"Dir::Etc::sourcelist": apt_dir / "sources.list",
                "Dir::Etc::sourceparts": apt_dir / "sources.list.d",  # kept empty
                "Dir::State::Lists": apt_dir / "lists",
                "Dir::Cache": apt_dir / "cache",
                "Acquire::Check-Valid-Until": "false"}  # a frozen mirror's Release may be old
    return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]


def apt_command(apt_dir: Path, tool: str, *args: str) -> list[str]:
    return [tool, *apt_options(apt_dir), *args]


def prepare_apt(apt_dir: Path) -> None:
    for folder in ("sources.list.d", "lists/partial", "cache/archives/partial"):
        (apt_dir / folder).mkdir(parents=True, exist_ok=True)
    (apt_dir / "sources.list").write_text(sources_list(), encoding="utf-8")


def _order(char: str) -> int:
    """dpkg's order of a version's non-digit characters: ~ before the end, letters first."""
    return -1 if char == "~" else ord(char) if char.isalpha() else ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    """dpkg's comparison of two upstream versions or revisions (verrevcmp)."""
    parts_a, parts_b = re.findall(r"(\D*)(\d*)", a), re.findall(r"(\D*)(\d*)", b)
    for index in range(max(len(parts_a), len(parts_b))):
        text_a, digits_a = parts_a[index] if index < len(parts_a) else ("", "")
        text_b, digits_b = parts_b[index] if index < len(parts_b) else ("", "")
        key_a = [_order(c) for c in text_a] + [0]  # the end sorts after ~, before the rest
        key_b = [_order(c) for c in text_b] + [0]
        if key_a != key_b:
            return -1 if key_a < key_b else 1
        if int(digits_a or 0) != int(digits_b or 0):
            return -1 if int(digits_a or 0) < int(digits_b or 0) else 1
    return 0


def compare_versions(a: str, b: str) -> int:
    """Debian's version order, as `dpkg --compare-versions`: -1, 0 or 1."""
    def split(version: str) -> tuple[int, str, str]:
        epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
        return int(epoch or 0), upstream, revision

    (epoch_a, up_a, rev_a), (epoch_b, up_b, rev_b) = split(a), split(b)
    if epoch_a != epoch_b:
        return -1 if epoch_a < epoch_b else 1
    return _compare_part(up_a, up_b) or _compare_part(rev_a, rev_b)


def listed_versions(showsrc: str, package: str) -> list[str]:
    """The versions of source package `package` in `apt-cache showsrc` output, newest first."""
    versions: list[str] = []
    for stanza in re.split(r"\n\s*\n", showsrc):
        fields = dict(re.findall(r"^(Package|Version): *(\S+)", stanza, re.M))
        if fields.get("Package") == package and fields.get("Version") not in (None, *versions):
            versions.append(fields["Version"])
    return sorted(versions, key=functools.cmp_to_key(compare_versions), reverse=True)


def series(package: str) -> str:
    return package.removeprefix("python")


def pick_source(packages: Iterable[str], versions_of: Callable[[str], list[str]],
                download: Callable[[str, str], bool],
                warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
                ) -> tuple[str, str]:
    """The first (package, version) that downloads: each package's versions newest first; a
    line through `warn` when it is not the first package's."""
    packages = list(packages)
    for package in packages:
        for version in versions_of(package):
            if download(package, version):
                if package != packages[0]:
                    warn(f"{packages[0]}'s source is not on the mirror: "
                         f"building {series(package)} instead")
                return package, version
    raise Refused(f"no source of {' or '.join(packages)} could be downloaded", 1)


def dsc_checksums(text: str) -> dict[str, tuple[str, int]]:
    """A .dsc's Checksums-Sha256 field: file name -> (sha256, size)."""
    checksums: dict[str, tuple[str, int]] = {}
    inside = False
    for line in text.splitlines():
        if not line[:1].isspace() or not line.strip():
            inside = line.startswith("Checksums-Sha256:")
            continue
        entry = re.fullmatch(r"\s+([0-9a-fA-F]{64})\s+(\d+)\s+(\S+)\s*", line)
        if inside and entry:
            checksums[entry.group(3)] = (entry.group(1).lower(), int(entry.group(2)))
    return checksums


def orig_tarball(checksums: dict[str, tuple[str, int]], dsc: Path) -> str:
    """The upstream tarball's name among a .dsc's files."""
    names = [n for n in checksums if re.fullmatch(r"[^/]+\.orig\.tar\.(xz|gz|bz2)", n)]
    if len(names) != 1:
        raise Refused(f"{dsc}: Checksums-Sha256 names {len(names)} upstream tarballs "
                      "(*.orig.tar.*), not one", 1)
    return names[0]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_tarball(dsc: Path) -> Path:
    """The .dsc's upstream tarball, next to it, once its size and SHA-256 match the .dsc's."""
    try:
        checksums = dsc_checksums(dsc.read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise Refused(f"{dsc}: cannot be read ({exc.strerror})", 1) from None
    name = orig_tarball(checksums, dsc)
    expected, size = checksums[name]
    tarball = dsc.parent / name
    if not tarball.is_file():
        raise Refused(f"{tarball}: not downloaded", 1)
    actual, actual_size = sha256(tarball), tarball.stat().st_size
    if (actual, actual_size) != (expected, size):
        tarball.unlink()  # so that the next attempt downloads it again
        raise Refused(f"{name}: SHA-256 {actual} ({actual_size} bytes) does not match "
                      f"{dsc.name}'s {expected} ({size} bytes): refused", 1)
    return tarball


def run_logged(command: list[str], log: Path, cwd: Path | None = None,
               env: dict[str, str] | None = None) -> int:
    """Run `command` with its output appended to `log`: its exit status."""
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        try:
            return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                  stdin=subprocess.DEVNULL).returncode
        except OSError as exc:
            out.write(f"{exc}\n")
            return 127


def failure_reason(output: str) -> str:
    """The HTTP status, else the last `E:` line, of a failed apt download."""
    status = re.search(r"\b([1-5]\d\d)\s+([A-Za-z][A-Za-z ]*?)\s*(?:\[|$)", output, re.M)
    errors = [line[3:] for line in output.splitlines() if line.startswith("E: ")]
    return f"{status.group(1)} {status.group(2)}" if status else errors[-1] if errors else "failed"


def fetch_source(root: Path) -> tuple[str, str, Path]:
    """Download the newest source package that can be had: (package, version, its .dsc)."""
    apt_dir, downloads, log = root / "apt", root / "src", root / "fetch.log"
    if shutil.which("apt-get") is None:
        raise Refused("apt-get not found: the source comes from Debian's archive through apt", 2)
    prepare_apt(apt_dir)
    downloads.mkdir(exist_ok=True)
    say(f"apt-get update: {', '.join(SUITES)} source indexes into {apt_dir}/ (log: {log})")
    if run_logged(apt_command(apt_dir, "apt-get", "update"), log):
        raise Refused(f"apt-get update with the sources of {apt_dir}/sources.list failed: "
                      f"see {log}", 1)
    if not any((apt_dir / "lists").glob("*_Sources*")):
        raise Refused(f"apt-get update fetched no source index (sources: {apt_dir}/sources.list)"
                      f": see {log}", 1)

    def versions_of(package: str) -> list[str]:
        result = subprocess.run(apt_command(apt_dir, "apt-cache", "showsrc", package),
                                capture_output=True, text=True, stdin=subprocess.DEVNULL)
        versions = listed_versions(result.stdout, package)
        say(f"{package}: {', '.join(versions) or 'no version listed'}")
        return versions

    def download(package: str, version: str) -> bool:
        start = log.stat().st_size if log.exists() else 0
        command = apt_command(apt_dir, "apt-get", "source", "--download-only",
                              f"{package}={version}")
        if run_logged(command, log, cwd=downloads) == 0:
            say(f"{package} {version}: downloaded into {downloads}/")
            return True
        with open(log, encoding="utf-8", errors="replace") as text:
            text.seek(start)
            say(f"{package} {version}: not downloaded ({failure_reason(text.read())})")
        return False

    try:
        package, version = pick_source(PACKAGES, versions_of, download)
    except Refused as exc:
        raise Refused(f"{exc}: see {log}", exc.status) from None
    return package, version, downloads / f"{package}_{version.partition(':')[2] or version}.dsc"


# ---- the build ----------------------------------------------------------------------------------

def upstream_version(debian_version: str) -> str:
    """3.13.15-1 -> 3.13.15; 1:3.14.0~rc3-1 -> 3.14.0rc3 (CPython's spelling)."""
    rest = debian_version.partition(":")[2] or debian_version
    return rest.rpartition("-")[0].replace("~", "") if "-" in rest else rest.replace("~", "")


def configure_command(prefix: Path) -> list[str]:
    # no --enable-optimizations: PGO would run the test suite, far past 10 minutes on 2 cores
    return ["./configure", "--disable-gil", f"--prefix={prefix}", "--with-ensurepip=install"]


def build_env() -> dict[str, str]:
    """The environment minus what would steer the build: the caller's make and Python."""
    drop = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTHON")}


def build(tarball: Path, version: str, root: Path, jobs: int = JOBS) -> Path:
    """configure, make and make install `tarball` into root/cpython-<version>t: its python."""
    root = root.resolve()
    prefix, work = root / f"cpython-{version}t", root / "build"
    log = root / f"{prefix.name}-build.log"
    log.write_text("", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(prefix, ignore_errors=True)  # a build that did not finish
    say(f"building CPython {version} (--disable-gil) into {prefix}/ (log: {log})")
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(work, **({"filter": "data"} if hasattr(tarfile, "data_filter")
                                        else {}))
    except (OSError, tarfile.TarError) as exc:
        raise Refused(f"{tarball}: cannot be unpacked ({exc})", 1) from None
    trees = [p for p in work.iterdir() if (p / "configure").is_file()]
    if len(trees) != 1:
        raise Refused(f"{tarball}: no single source tree with a configure script", 1)
    env = build_env()
    try:
        for step in (configure_command(prefix), ["make", f"-j{jobs}"], ["make", "install"]):
            say(f"  {' '.join(step[:2])}")
            if (status := run_logged(step, log, cwd=trees[0], env=env)) != 0:
                raise Refused(f"{' '.join(step[:2])} failed (exit {status}): see {log}", 1)
        python = prefix / "bin" / f"python{'.'.join(version.split('.')[:2])}t"
        if not gil_disabled(python):
            raise Refused(f"{python} does not run with the GIL disabled: see {log}", 1)
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)  # never leave a half-built interpreter
        raise
    shutil.rmtree(work, ignore_errors=True)
    return python


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.python_ft",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="where the build, its source and logs go (default: .pythons)")
    parser.add_argument("--jobs", type=int, default=JOBS, help="make -j (default: 2)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if (python := built(args.root)) is not None:
            print(f"{python}: CPython {prefix_version(python.parents[1])}, GIL disabled, "
                  "already built: nothing to do")
            return 0
        args.root.mkdir(parents=True, exist_ok=True)
        ensure_dependencies(args.root / "apt-install.log")
        _package, debian_version, dsc = fetch_source(args.root)
        tarball = verified_tarball(dsc)
        say(f"{tarball.name}: SHA-256 matches {dsc.name}")
        version = upstream_version(debian_version)
        build_started = time.monotonic()
        python = build(tarball, version, args.root, args.jobs)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    done = time.monotonic()
    print(f"built {python} (CPython {version}, GIL disabled) in {minutes(done - started)} "
          f"(build {minutes(done - build_started)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
