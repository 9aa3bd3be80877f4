"""`make python-ft` (bench/python_ft.py) without the network or a real build: the .dsc's
checksums, the private apt configuration, the choice of the source (and the fallback to 3.13),
idempotence, and the build's steps against a fake source tree whose configure and Makefile are
small shell scripts."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from bench import python_ft

SHA = "1e66a7945a48390ee4c2a4268a0e4185884059a13c4aab6d148aa208deea4a76"
DEBIAN_SHA = "1cf592dd51de735ff73644743e8959fb16bd50714168855509b709fdeede8342"
DSC = f"""-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Format: 3.0 (quilt)
Source: python3.13
Version: 3.13.15-1
Checksums-Sha1:
 ad29f70f33312d40732a850013cd24ad7c2cafb5 23160540 python3.13_3.13.15.orig.tar.xz
Checksums-Sha256:
 {SHA} 23160540 python3.13_3.13.15.orig.tar.xz
 {DEBIAN_SHA} 261776 python3.13_3.13.15-1.debian.tar.xz
Files:
 213ef0026b5363353594e0cfa78174ab 23160540 python3.13_3.13.15.orig.tar.xz

-----BEGIN PGP SIGNATURE-----
iQJEBAEBCgAuFiEE1WVxuIqLuvFAv2PWvX6qYHePpvUFAmp64X0QHGRva29AZGVi
-----END PGP SIGNATURE-----
"""

SHOWSRC = """Package: python3.14
Binary: python3.14, python3.14-venv
Version: 3.14.9-1
Package-List:
 python3.14 deb python optional arch=any

Package: python3.14
Version: 3.14.10-1

Package: python3-defaults
Binary: python3
Version: 3.14.10-1

Package: python3.14
Version: 3.14.8-1
"""


# ---- the .dsc -----------------------------------------------------------------------------------

def test_the_dsc_checksums_are_its_sha256_field_alone():
    assert python_ft.dsc_checksums(DSC) == {
        "python3.13_3.13.15.orig.tar.xz": (SHA, 23160540),
        "python3.13_3.13.15-1.debian.tar.xz": (DEBIAN_SHA, 261776)}


def _source(folder: Path, content: bytes, listed: bytes | None = None) -> Path:
    """A downloaded .dsc and its tarball `content`; the .dsc lists `listed`'s checksum."""
    listed = content if listed is None else listed
    name = "python3.13_3.13.15.orig.tar.xz"
    (folder / name).write_bytes(content)
    dsc = folder / "python3.13_3.13.15-1.dsc"
    dsc.write_text(DSC.replace(f"{SHA} 23160540",
                               f"{hashlib.sha256(listed).hexdigest()} {len(listed)}"))
    return dsc


def test_a_tarball_matching_the_dsc_is_accepted(tmp_path):
    dsc = _source(tmp_path, b"upstream source")
    assert python_ft.verified_tarball(dsc) == tmp_path / "python3.13_3.13.15.orig.tar.xz"


@pytest.mark.parametrize("listed", [b"other source!!!", b"upstream source, longer"],
                         ids=["same size, other sha256", "other size"])
def test_a_tarball_not_matching_the_dsc_is_refused_and_removed(tmp_path, listed):
    dsc = _source(tmp_path, b"upstream source", listed)
    with pytest.raises(python_ft.Refused, match="does not match .*: refused") as refused:
        python_ft.verified_tarball(dsc)
    assert refused.value.status == 1
    assert not (tmp_path / "python3.13_3.13.15.orig.tar.xz").exists()


def test_a_dsc_without_an_upstream_tarball_is_refused(tmp_path):
    dsc = tmp_path / "python3.13_3.13.15-1.dsc"
    dsc.write_text(DSC.replace(".orig.tar.xz", ".tar.xz"))
    with pytest.raises(python_ft.Refused, match="names 0 upstream tarballs"):
        python_ft.verified_tarball(dsc)


# ---- the private apt ----------------------------------------------------------------------------

def test_every_apt_path_is_the_private_folders_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = python_ft.apt_command(Path(".pythons/apt"), "apt-get", "update")
    options = dict(command[i + 1].split("=", 1) for i, arg in enumerate(command) if arg == "-o")
    private = tmp_path / ".pythons" / "apt"
    assert options == {"Dir::Etc::sourcelist": str(private / "sources.list"),
                       "Dir::Etc::sourceparts": str(private / "sources.list.d"),
                       "Dir::State::Lists": str(private / "lists"),
                       "Dir::Cache": str(private / "cache"),
                       "Acquire::Check-Valid-Until": "false"}
    assert command[0] == "apt-get" and command[-1] == "update"


def test_the_private_sources_are_the_four_suites_signed_by_debians_keyring(tmp_path):
    python_ft.prepare_apt(tmp_path / "apt")
    lines = (tmp_path / "apt" / "sources.list").read_text().splitlines()
    assert lines == [f"deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                     f"http://deb.debian.org/debian {suite} main"
                     for suite in ("sid", "forky", "trixie", "experimental")]
    assert list((tmp_path / "apt" / "sources.list.d").iterdir()) == []
    assert (tmp_path / "apt" / "lists" / "partial").is_dir()


class FakeApt:
    """apt-get and apt-cache as fetch_source runs them: the commands, a canned showsrc, and
    only the (package, version) pairs in `downloadable` downloading."""

    def __init__(self, downloadable: set[str]) -> None:
        self.downloadable = downloadable
        self.commands: list[list[str]] = []

    def run_logged(self, command, log, cwd=None, env=None):
        self.commands.append(command)
        if command[-1] == "update":
            lists = Path(dict(a.split("=", 1) for a in command if "=" in a)["Dir::State::Lists"])
            (lists / "deb.debian.org_debian_dists_sid_main_source_Sources").write_text("")
            return 0
        with open(log, "a") as out:
            if command[-1] in self.downloadable:
                return 0
            out.write("Err:1 http://deb.debian.org/debian sid/main python3.14 (tar)\n"
                      "  404  Not Found [IP: 151.101.2.132 80]\n"
                      "E: Failed to fetch http://deb.debian.org/debian/pool/x  404  Not Found\n")
            return 100

    def run(self, command, **kwargs):
        self.commands.append(command)
        package = command[-1]
        text = SHOWSRC if package == "python3.14" else SHOWSRC.replace("3.14", "3.13")
        return type("Result", (), {"stdout": text, "returncode": 0})()


@pytest.fixture
def fake_apt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    apt = FakeApt({"python3.13=3.13.9-1", "python3.13=3.13.8-1"})
    monkeypatch.setattr(python_ft, "run_logged", apt.run_logged)
    monkeypatch.setattr(python_ft.subprocess, "run", apt.run)
    monkeypatch.setattr(python_ft.shutil, "which", lambda name: f"/usr/bin/{name}")
    return apt


def test_fetching_never_touches_the_systems_apt_sources(fake_apt, tmp_path):
    python_ft.fetch_source(Path(".pythons"))
    assert len(fake_apt.commands) >= 4  # update, showsrc, downloads
    private = tmp_path / ".pythons" / "apt"
    for command in fake_apt.commands:
        assert command[0] in ("apt-get", "apt-cache")
        assert f"Dir::Etc::sourcelist={private}/sources.list" in command
        assert f"Dir::Etc::sourceparts={private}/sources.list.d" in command
        assert f"Dir::State::Lists={private}/lists" in command
        assert f"Dir::Cache={private}/cache" in command
        assert not any("/etc/apt" in arg for arg in command)


def test_without_python314_the_newest_python313_that_downloads_is_taken(fake_apt, capsys):
    package, version, dsc = python_ft.fetch_source(Path(".pythons"))
    assert (package, version) == ("python3.13", "3.13.9-1")
    assert dsc == Path(".pythons/src/python3.13_3.13.9-1.dsc")
    tried = [c[-1] for c in fake_apt.commands if "--download-only" in c]
    assert tried == ["python3.14=3.14.10-1", "python3.14=3.14.9-1", "python3.14=3.14.8-1",
                     "python3.13=3.13.10-1", "python3.13=3.13.9-1"]
    out, err = capsys.readouterr()
    assert err == "python3.14's source is not on the mirror: building 3.13 instead\n"
    assert "python3.14 3.14.10-1: not downloaded (404 Not Found)" in out


def test_python314_is_taken_when_it_downloads_and_nothing_is_said(fake_apt, capsys):
    fake_apt.downloadable.add("python3.14=3.14.9-1")
    assert python_ft.fetch_source(Path(".pythons"))[:2] == ("python3.14", "3.14.9-1")
    assert capsys.readouterr().err == ""


def test_nothing_downloadable_is_refused_naming_the_log(fake_apt):
    fake_apt.downloadable.clear()
    with pytest.raises(python_ft.Refused, match=r"no source of python3.14 or python3.13 could "
                                                r"be downloaded: see .pythons/fetch.log") as no:
        python_ft.fetch_source(Path(".pythons"))
    assert no.value.status == 1


def test_pick_source_tries_each_package_newest_first():
    tried, said = [], []
    versions = {"python3.14": ["3.14.10-1", "3.14.9-1"], "python3.13": ["3.13.15-1"]}
    chosen = python_ft.pick_source(
        ["python3.14", "python3.13"], versions.get,
        lambda package, version: tried.append(version) or version == "3.13.15-1", said.append)
    assert chosen == ("python3.13", "3.13.15-1")
    assert tried == ["3.14.10-1", "3.14.9-1", "3.13.15-1"]
    assert said == ["python3.14's source is not on the mirror: building 3.13 instead"]


def test_showsrc_versions_are_the_packages_own_newest_first():
    assert python_ft.listed_versions(SHOWSRC, "python3.14") == ["3.14.10-1", "3.14.9-1",
                                                                "3.14.8-1"]
    assert python_ft.listed_versions("", "python3.14") == []


@pytest.mark.parametrize("older, newer", [
    ("3.14.9-1", "3.14.10-1"), ("3.14.0~rc3-1", "3.14.0-1"), ("3.14.10-1", "1:3.1-1"),
    ("3.14.10-1", "3.14.10-1+b1"), ("3.14.10-1~exp1", "3.14.10-1"), ("3.13.5-2", "3.13.15-1"),
    ("3.13.5-2+deb13u5", "3.13.15-1")])
def test_versions_compare_as_dpkg_does(older, newer):
    key = functools.cmp_to_key(python_ft.compare_versions)
    assert key(older) < key(newer) and python_ft.compare_versions(newer, newer) == 0


def test_the_upstream_version_is_cpythons_spelling():
    assert python_ft.upstream_version("3.13.15-1") == "3.13.15"
    assert python_ft.upstream_version("3.14.0~rc3-1") == "3.14.0rc3"


# ---- dependencies -------------------------------------------------------------------------------

def _status(missing: set[str]):
    return lambda package: "" if package in missing else "install ok installed"


def test_missing_dependencies_as_non_root_are_refused_with_status_2(tmp_path):
    with pytest.raises(python_ft.Refused, match="needs uuid-dev libgdbm-dev, not installed") as no:
        python_ft.ensure_dependencies(tmp_path / "log", _status({"uuid-dev", "libgdbm-dev"}),
                                      install=pytest.fail, is_root=False)
    assert no.value.status == 2


def test_only_the_missing_dependencies_are_installed_after_saying_so(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(python_ft.shutil, "which", lambda name: f"/usr/bin/{name}")
    installed = []
    python_ft.ensure_dependencies(tmp_path / "log", _status({"libgdbm-dev"}),
                                  lambda packages, log: installed.extend(packages), is_root=True)
    assert installed == ["libgdbm-dev"]
    assert capsys.readouterr().out == ("installing the build's missing dependencies with "
                                       "apt-get: libgdbm-dev\n")
    assert python_ft.ensure_dependencies(tmp_path / "log", _status(set()), pytest.fail,
                                         is_root=True) == []


# ---- idempotence and the build ------------------------------------------------------------------

def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{text}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_working_build_is_left_alone(tmp_path, monkeypatch, capsys):
    python = _script(tmp_path / "cpython-3.13.15t" / "bin" / "python3.13t", "echo False")
    for step in ("ensure_dependencies", "fetch_source", "build"):
        monkeypatch.setattr(python_ft, step, lambda *a, **k: pytest.fail("built again"))
    assert python_ft.main(["--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == (f"{python}: CPython 3.13.15, GIL disabled, already "
                                       "built: nothing to do\n")


@pytest.mark.parametrize("answer", ["echo True", "exit 1"], ids=["GIL on", "broken"])
def test_a_build_that_does_not_run_free_threaded_is_not_taken_as_built(tmp_path, answer):
    _script(tmp_path / "cpython-3.13.15t" / "bin" / "python3.13t", answer)
    assert python_ft.built(tmp_path) is None


def _tarball(folder: Path, configure: str, makefile: str) -> Path:
    tarball = folder / "python3.13_3.13.15.orig.tar.xz"
    with tarfile.open(tarball, "w:xz") as archive:
        for name, text in (("configure", f"#!/bin/sh\n{configure}\n"), ("Makefile", makefile)):
            info = tarfile.TarInfo(f"Python-3.13.15/{name}")
            info.size, info.mode = len(text.encode()), 0o755
            archive.addfile(info, io.BytesIO(text.encode()))
    return tarball


# configure writes the prefix for make; `make install` puts a python3.13t that answers False
CONFIGURE = 'for a; do case $a in --prefix=*) echo "PREFIX=${a#--prefix=}" > prefix.mk;; esac; done'
MAKEFILE = """include prefix.mk
all:
\ttrue
install:
\tmkdir -p $(PREFIX)/bin
\tprintf '#!/bin/sh\\necho False\\n' > $(PREFIX)/bin/python3.13t
\tchmod +x $(PREFIX)/bin/python3.13t
"""


def test_the_build_configures_free_threaded_without_pgo_and_installs(tmp_path):
    root = tmp_path / ".pythons"
    root.mkdir()
    python = python_ft.build(_tarball(tmp_path, CONFIGURE, MAKEFILE), "3.13.15", root)
    assert python == root / "cpython-3.13.15t" / "bin" / "python3.13t"
    assert python_ft.built(root) == python
    log = (root / "cpython-3.13.15t-build.log").read_text()
    assert f"./configure --disable-gil --prefix={python.parents[1]} --with-ensurepip=install" \
        in log
    assert "--enable-optimizations" not in log and "$ make -j2" in log
    assert not (root / "build").exists()


def test_a_failed_step_is_refused_naming_the_log_and_leaves_no_prefix(tmp_path):
    root = tmp_path / ".pythons"
    root.mkdir()
    makefile = MAKEFILE.replace("include prefix.mk", "include prefix.mk\nall install: broken")
    with pytest.raises(python_ft.Refused, match=r"make -j2 failed \(exit 2\): see .*"
                                                r"cpython-3.13.15t-build.log") as failed:
        python_ft.build(_tarball(tmp_path, CONFIGURE, makefile), "3.13.15", root)
    assert failed.value.status == 1
    assert not (root / "cpython-3.13.15t").exists()


def test_the_builds_make_does_not_inherit_the_callers_make(monkeypatch):
    monkeypatch.setenv("MAKEFLAGS", "-j8")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = python_ft.build_env()
    assert "MAKEFLAGS" not in env and "PYTHONPATH" not in env
    assert env["PATH"] == os.environ["PATH"]


def test_a_refusal_is_one_line_on_stderr_with_its_status(tmp_path, monkeypatch, capsys):
    def refuse(log):
        raise python_ft.Refused("the build needs uuid-dev, not installed", 2)

    monkeypatch.setattr(python_ft, "ensure_dependencies", refuse)
    assert python_ft.main(["--root", str(tmp_path / ".pythons")]) == 2
    assert capsys.readouterr().err == "error: the build needs uuid-dev, not installed\n"
