"""The sampler finds the cell's process tree from the kernel's children lists, the same
processes psutil's machine-wide scan finds, and falls back to that scan where the lists are
absent."""

import subprocess
import sys
import time

import psutil
import pytest

from harness.cell import sampler as sampler_module
from harness.cell.sampler import Sampler, child_pids

# A child that starts a grandchild from a second thread that stays alive (the lists are per
# thread: a child is listed under the thread that started it while that thread lives), another
# from its main thread, then waits.
TREE = """\
import subprocess, sys, threading
started, hold = threading.Event(), threading.Event()
def slot():
    subprocess.Popen(["sleep", "30"])
    started.set()
    hold.wait()
threading.Thread(target=slot, daemon=True).start()
started.wait()
subprocess.Popen(["sleep", "30"])
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def tree():
    child = subprocess.Popen([sys.executable, "-c", TREE], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        yield child
    finally:
        for proc in psutil.Process(child.pid).children(recursive=True):
            proc.kill()
        child.kill()
        child.wait()


@pytest.mark.skipif(child_pids(psutil.Process().pid) is None,
                    reason="no per-thread children lists on this system")
def test_child_pids_finds_what_the_machine_wide_scan_finds(tree):
    me = psutil.Process()
    found = child_pids(me.pid)
    assert sorted(found) == sorted(p.pid for p in me.children(recursive=True))
    assert len(found) >= 3  # the child and both grandchildren, one started from a thread
    assert child_pids(tree.pid) and len(child_pids(tree.pid)) == 2


def test_without_the_lists_it_says_so(tmp_path):
    (tmp_path / "1" / "task" / "1").mkdir(parents=True)  # a /proc whose kernel keeps none
    assert child_pids(1, proc=str(tmp_path)) is None


def test_a_list_naming_an_ended_process_is_read_past(tmp_path):
    for pid, tid, children in ((1, 1, "2 3"), (1, 4, ""), (2, 2, "5")):
        task = tmp_path / str(pid) / "task" / str(tid)
        task.mkdir(parents=True)
        (task / "children").write_text(children)
    # 3 and 5 have no /proc entry left: listed, not descended into
    assert sorted(child_pids(1, proc=str(tmp_path))) == [2, 3, 5]


def test_the_sampler_falls_back_to_the_machine_wide_scan(tree, monkeypatch):
    class Backend:
        gauge = None
        completed = 0
        lag_samples = None

    monkeypatch.setattr(sampler_module, "child_pids", lambda pid: None)
    sampler = Sampler(Backend())
    sampler._scan()
    assert tree.pid in [p.pid for p in sampler._children]
    monkeypatch.undo()
    if child_pids(psutil.Process().pid) is not None:
        kept = {p.pid: p for p in sampler._children}
        sampler._scan()  # from the lists now: the same processes, the same objects
        assert {p.pid for p in sampler._children} == set(kept)
        assert all(kept[p.pid] is p for p in sampler._children)


def test_a_slot_started_after_a_scan_is_found_by_the_next(tree):
    class Backend:
        gauge = None
        completed = 0
        lag_samples = None

    sampler = Sampler(Backend())
    sampler._scan()
    before = {p.pid for p in sampler._children}
    late = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.05)
        sampler._scan()
        assert {p.pid for p in sampler._children} == before | {late.pid}
    finally:
        late.kill()
        late.wait()
