"""The studio's job queue: order and places in the queue, the concurrency and per-session
limits, cancel (waiting: at once; running: at the job's next poll), failures, and the memory
release after every job. No torch, no gradio."""

from __future__ import annotations

import threading
import time

import pytest

from impasto.web.jobs import JobLimitError, JobRunner


def _blocker(started: threading.Event, release: threading.Event, steps: int = 1000):
    def fn(job):
        started.set()
        for i in range(steps):
            if job.cancelled():
                return f"stopped at {i}"
            job.report(i + 1, steps, message=f"step {i + 1}")
            if release.wait(0.01):
                return "released"
        return "done"
    return fn


def test_one_at_a_time_in_order_with_places_in_the_queue():
    released = []
    runner = JobRunner(1, per_session=5, release=lambda: released.append(1))
    started, go = threading.Event(), threading.Event()
    first = runner.submit(_blocker(started, go), name="a", owner="s1")
    assert started.wait(5)
    order = []
    rest = [runner.submit(lambda job, k=k: order.append(k) or k, owner="s2") for k in range(3)]
    assert [j.status().position for j in rest] == [1, 2, 3]
    assert [j.status().state for j in rest] == ["queued"] * 3
    assert first.status().state == "running" and first.status().position == 0
    assert runner.counts() == (1, 3)
    go.set()
    for j in [first, *rest]:
        assert j.wait(5)
    assert order == [0, 1, 2]
    assert first.result == "released" and [j.result for j in rest] == [0, 1, 2]
    assert all(j.status().state == "done" for j in [first, *rest])
    assert len(released) == 4  # release after every job
    runner.shutdown()


def test_two_workers_run_two_jobs_at_once():
    runner = JobRunner(2, per_session=5)
    s1, s2, go = threading.Event(), threading.Event(), threading.Event()
    a = runner.submit(_blocker(s1, go), owner="x")
    b = runner.submit(_blocker(s2, go), owner="x")
    assert s1.wait(5) and s2.wait(5)
    assert runner.counts() == (2, 0)
    go.set()
    assert a.wait(5) and b.wait(5)
    runner.shutdown()


def test_cancel_a_running_job_stops_it_at_its_next_step():
    runner = JobRunner(1)
    started, never = threading.Event(), threading.Event()
    job = runner.submit(_blocker(started, never, steps=100000), owner="s")
    assert started.wait(5)
    time.sleep(0.1)
    assert job.status().done > 0 and job.status().eta is not None
    job.cancel()
    # it stops at its next step (milliseconds); 10 s only bounds a machine under heavy load
    assert job.wait(10.0)
    st = job.status()
    assert st.state == "cancelled" and job.result.startswith("stopped at")
    runner.shutdown()


def test_cancel_a_waiting_job_ends_it_at_once_and_it_never_runs():
    runner = JobRunner(1)
    started, go = threading.Event(), threading.Event()
    first = runner.submit(_blocker(started, go), owner="a")
    assert started.wait(5)
    ran = []
    waiting = runner.submit(lambda job: ran.append(1), owner="b")
    after = runner.submit(lambda job: "after", owner="c")
    assert after.status().position == 2
    waiting.cancel()
    assert waiting.wait(0.1) and waiting.status().state == "cancelled"
    assert after.status().position == 1
    go.set()
    assert after.wait(5) and after.result == "after"
    assert first.wait(5) and ran == []
    runner.shutdown()


def test_per_session_limit_and_failures_are_reported():
    runner = JobRunner(1, per_session=1)
    started, go = threading.Event(), threading.Event()
    job = runner.submit(_blocker(started, go), owner="s")
    with pytest.raises(JobLimitError, match="already has 1 job"):
        runner.submit(lambda job: None, owner="s")
    other = runner.submit(lambda job: 1 / 0, owner="t")  # another session may queue
    go.set()
    assert job.wait(5) and other.wait(5)
    st = other.status()
    assert st.state == "failed" and st.error == "division by zero"
    runner.submit(lambda job: None, owner="s").wait(5)  # its job ended: it may submit again
    runner.shutdown()


def test_cancel_owner_and_shutdown_end_every_job():
    runner = JobRunner(1, per_session=3)
    started, never = threading.Event(), threading.Event()
    a = runner.submit(_blocker(started, never, steps=100000), owner="s")
    b = runner.submit(lambda job: "b", owner="s")
    c = runner.submit(lambda job: "c", owner="t")
    assert started.wait(5)
    runner.cancel_owner("s")
    assert a.wait(1) and b.wait(1)
    assert a.status().state == b.status().state == "cancelled"
    assert c.wait(5) and c.result == "c"
    runner.shutdown()
    with pytest.raises(RuntimeError):
        runner.submit(lambda job: None)
