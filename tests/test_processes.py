"""The test harness's process bookkeeping (``tests/processes.py``): ``procs`` ends whole process trees, orphans
included; the end-of-run check sees an orphan this run started and never another program's process."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .conftest import RAY_TMPDIR
from .processes import Processes, alive, leftovers, stop_all, wait_for

ORPHAN = "import subprocess, sys; p = subprocess.Popen(['sleep', '300']); print(p.pid, flush=True)"


def test_closing_ends_the_process_its_children_and_orphans_of_its_session():
    with Processes(grace=2) as procs:
        parent = procs.popen([sys.executable, "-c", ORPHAN + "; import time; time.sleep(300)"],
                             stdout=subprocess.PIPE, text=True)
        child = int(parent.stdout.readline())
        orphan_maker = procs.popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True)
        orphan = int(orphan_maker.stdout.readline())
        orphan_maker.wait(30)  # its child lives on, handed to us (the subreaper)
        assert all(alive(p) for p in (parent.pid, child, orphan))
    wait_for(lambda: not any(alive(p) for p in (parent.pid, child, orphan)), 10, "the whole tree to end")


def test_the_leak_check_finds_an_orphan_of_this_run_and_not_other_processes():
    maker = subprocess.Popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True)
    orphan = int(maker.stdout.readline())
    maker.wait(30)
    maker.stdout.close()
    try:
        left = leftovers(RAY_TMPDIR)
        assert orphan in left and "sleep 300" in left[orphan]
        assert 1 not in left  # init, like any process this run did not start
    finally:
        stop_all([orphan], grace=2)
    assert orphan not in leftovers(RAY_TMPDIR, grace=5)


def test_run_ends_the_tree_on_timeout_and_says_so():
    with Processes(grace=2) as procs:
        start = time.monotonic()
        with pytest.raises(AssertionError, match="still running after 1s"):
            procs.run([sys.executable, "-c", "import time; time.sleep(300)"], timeout=1)
        assert time.monotonic() - start < 15
        assert not alive(procs.started[0].pid)


def test_wait_for_returns_the_value_and_fails_when_the_process_ended_first():
    assert wait_for(lambda: 42, 1) == 42
    proc = subprocess.Popen([sys.executable, "-c", "print('bye')"], stdout=subprocess.PIPE, text=True)
    with pytest.raises(AssertionError, match="(?s)ended \\(exit 0\\) before the file.*bye"):
        wait_for(lambda: False, 30, "the file", proc)
    with pytest.raises(AssertionError, match="timed out"):
        wait_for(lambda: None, 0.3, "nothing")
