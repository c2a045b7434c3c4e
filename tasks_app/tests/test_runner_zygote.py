"""The worker's handle on a zygote child: the watchdog and the run's own end may both kill and wait for it."""

from __future__ import annotations

import os
import signal
import struct
import threading

from tasks_app.runner.zygote import ZygoteProc


def test_two_threads_waiting_for_one_child_both_get_its_status_and_close_its_pipe_once():
    """The status pipe was read and closed by each waiter: the second read nothing (and reported SIGKILL), and
    closed the descriptor again (EBADF, or worse, a descriptor reused meanwhile by someone else)."""
    for _ in range(300):
        read_end, write_end = os.pipe()
        os.write(write_end, struct.pack("i", -signal.SIGTERM))
        os.close(write_end)
        proc = ZygoteProc(pid=0, status_fd=read_end)
        start = threading.Barrier(2)
        seen: list[object] = []

        def wait(proc=proc, start=start, seen=seen) -> None:
            start.wait()
            try:
                seen.append(proc.wait(timeout=5))
            except OSError as exc:
                seen.append(exc)

        waiters = [threading.Thread(target=wait) for _ in range(2)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join()
        assert seen == [-signal.SIGTERM, -signal.SIGTERM]
        assert proc.poll() == -signal.SIGTERM
