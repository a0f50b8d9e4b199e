"""Random ids drawn from per-thread blocks of the OS's random source."""

from __future__ import annotations

import os
import re
import threading
import uuid

from comfygate import ids


def test_job_ids_are_version_4_uuids_and_never_repeat() -> None:
    made = [ids.job_id() for _ in range(3 * ids.BLOCK_BYTES // 16)]  # several blocks
    assert len(set(made)) == len(made)
    for value in made[:50]:
        assert uuid.UUID(hex=value).version == 4
        assert re.fullmatch(r"[0-9a-f]{32}", value)


def test_threads_draw_different_ids() -> None:
    seen: list[list[str]] = []

    def draw() -> None:
        seen.append([ids.job_id() for _ in range(100)])

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for batch in seen for i in batch]
    assert len(set(everything)) == 400


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    ids.job_id()  # the parent has a block under way
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.close(read)
        os.write(write, ids.job_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child != ids.job_id()
    assert re.fullmatch(r"[0-9a-f]{16}", ids.request_id())
