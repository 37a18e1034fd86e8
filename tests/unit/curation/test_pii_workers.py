"""Forked PII detection workers end when their pool is terminated, whatever SIGTERM
handler the parent had when it forked them (under a flow run, Prefect's): a worker that
outlives it leaves the parent waiting on it for ever."""

import multiprocessing
import signal
import threading
import time

from thaw.pii.detector import start_worker


def test_the_pool_terminates_whatever_sigterm_handler_the_parent_has():
    """Workers busy when the pool is terminated: the parent takes the task queue's lock,
    so a worker that outlives SIGTERM waits on it after its chunk, and the parent on it."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # one that does not end a process
    before = set(multiprocessing.active_children())
    try:
        pool = multiprocessing.get_context("fork").Pool(2, initializer=start_worker)
        assert pool.map(abs, [-1, -2]) == [1, 2]
        busy = [pool.apply_async(time.sleep, (5.0,)) for _ in range(2)]  # ended long before they finish
        time.sleep(0.2)
        ended = threading.Event()
        threading.Thread(target=lambda: (pool.terminate(), ended.set()), daemon=True).start()
        assert ended.wait(30), "a worker outlived SIGTERM: the pool's exit waits on it"
        assert not any(r.ready() for r in busy)  # ended by the signal, not by finishing their chunks
    finally:
        signal.signal(signal.SIGTERM, previous)
        for worker in set(multiprocessing.active_children()) - before:  # none, unless the test failed
            worker.kill()
