"""One job attempt, in its own process: `python -m dsft.registry.child JOB_ID ATTEMPT`.

A crash or out-of-memory here kills only this process; the worker sees the exit and fails the
job with the log's tail. The child ends itself when its worker dies (so a re-queued job never
runs twice at once), and on SIGTERM it asks the task to stop at its next step (training saves a
checkpoint first): the job is then cancelled if a cancel was requested, or left for another
worker to resume if the worker is shutting down.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback

from dsft.data.codes import InputError
from dsft.errors import UserError
from dsft.registry import jobs, kinds, tasks


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(3)  # orphaned: the worker died; the job will be re-queued and resumed elsewhere
        time.sleep(0.5)


def main(job_id: str, attempt: int) -> int:
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    from dsft.home import dsft_home

    os.chdir(dsft_home())  # relative paths in a spec (and a library's own lookups) stay inside DSFT_HOME
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    job = jobs.get(job_id)
    if job.attempt != attempt or job.status != "running":
        return 0  # the job moved on before this process started
    ctx = tasks.Context(job_id, attempt, should_stop=stop.is_set)
    try:
        result = kinds.KINDS[job.kind](job.spec, ctx)
    except tasks.Cancelled as e:
        if jobs.get(job_id).cancel_requested:
            jobs.finish(job_id, attempt, "cancelled", error=str(e))
            return 0
        ctx.event("interrupted", why=str(e))  # worker shutting down: it re-queues the job
        return 0
    except UserError as e:
        jobs.finish(job_id, attempt, "failed", error=f"{e.message}" + (f" (fix: {e.fix})" if e.fix else ""))
        return 1
    except InputError as e:  # inputs that cannot be read at all: a user error too
        jobs.finish(job_id, attempt, "failed", error="; ".join(f"{f.where()}: {f.message} (fix: {f.fix})"
                                                               for f in e.findings[:5]))
        return 1
    except Exception as e:  # noqa: BLE001 - any other failure fails the job, with the traceback in its log
        traceback.print_exc()
        jobs.finish(job_id, attempt, "failed", error=f"{type(e).__name__}: {e}")
        return 1
    if stop.is_set() and jobs.get(job_id).cancel_requested:
        jobs.finish(job_id, attempt, "cancelled", result=result)
        return 0
    jobs.finish(job_id, attempt, "succeeded", result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
