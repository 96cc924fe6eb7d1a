"""`dsft worker`: claim jobs and run each in a child process, as many at once as configured.

The loop, every `poll` seconds: re-queue jobs whose worker died (stale heartbeat), beat for
the jobs it runs (and pass on cancel requests as SIGTERM), fail the jobs whose child exited
without a verdict (the log's tail says why), then claim new jobs while it has free slots.
Several workers, on several machines, share one PostgreSQL database and one DSFT_HOME.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dsft.home import dsft_home
from dsft.registry import jobs


@dataclass
class Running:
    job_id: str
    attempt: int
    proc: subprocess.Popen
    log: Path
    signalled: bool = False


@dataclass
class Worker:
    concurrency: int = 1
    poll: float = 0.5
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    running: dict[str, Running] = field(default_factory=dict)
    done: int = 0

    def run(self, stop: threading.Event | None = None, max_jobs: int | None = None) -> None:
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                self.tick(max_jobs)
                if max_jobs is not None and self.done >= max_jobs and not self.running:
                    return
                stop.wait(self.poll)
        finally:
            self.shutdown()

    def tick(self, max_jobs: int | None = None) -> None:
        from dsft.registry.kinds import SCHEDULES  # the workflows' modules, loaded once a worker runs

        jobs.requeue_stale()
        for scheduled in SCHEDULES:
            scheduled()
        for job_id in jobs.heartbeat(list(self.running), self.name):
            r = self.running[job_id]
            if not r.signalled:
                r.proc.send_signal(signal.SIGTERM)
                r.signalled = True
        for job_id, r in list(self.running.items()):
            code = r.proc.poll()
            if code is None:
                continue
            del self.running[job_id]
            self.done += 1
            job = jobs.get(job_id)
            if job.status == "running" and job.attempt == r.attempt:
                if job.cancel_requested:
                    jobs.finish(job_id, r.attempt, "cancelled", error="stopped on request")
                else:
                    jobs.finish(job_id, r.attempt, "failed", error=f"the job's process exited with code {code}: "
                                                                   f"{_tail(r.log)}")
        while len(self.running) < self.concurrency and (max_jobs is None or self.done + len(self.running) < max_jobs):
            job = jobs.claim(self.name)
            if job is None:
                break
            self.running[job.id] = self._start(job.id, job.attempt)

    def _start(self, job_id: str, attempt: int) -> Running:
        log = dsft_home() / "jobs" / job_id / "log.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            out.write(f"--- attempt {attempt} on {self.name}\n".encode())
            out.flush()
            proc = subprocess.Popen([sys.executable, "-m", "dsft.registry.child", job_id, str(attempt)],
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, "DSFT_HOME": str(dsft_home())})
        return Running(job_id, attempt, proc, log)

    def shutdown(self, grace: float = 60.0) -> None:
        """Ask running children to stop at their next step; re-queue their jobs for another worker."""
        for r in self.running.values():
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for r in self.running.values():
            try:
                r.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait()
        for job_id, r in self.running.items():
            job = jobs.get(job_id)
            if job.status == "running" and job.attempt == r.attempt:
                jobs.requeue(job_id, r.attempt, f"worker {self.name} shut down")
        self.running.clear()


def _tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])[-800:] or "(empty log)"
