"""The root log handler: a thread never waits for another thread's write, and every line
still reaches the stream whole, once, in order."""

from __future__ import annotations

import json
import logging
import threading

from app.logging import configure


class _SlowStream:
    """A stream whose first write blocks until released (a write in progress)."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.first_write_started = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        if not self.chunks:
            self.first_write_started.set()
            assert self.release.wait(10)
        self.chunks.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_line_logged_during_another_threads_write_is_written_after_it() -> None:
    stream = _SlowStream()
    handler = configure("INFO", json_lines=False, stream=stream)
    logger = logging.getLogger("app.test_log_handler")
    try:
        first = threading.Thread(target=logger.info, args=("first",))
        first.start()
        assert stream.first_write_started.wait(10)
        logger.info("second")  # returns while "first" is still being written
        assert stream.chunks == []
        stream.release.set()
        first.join(10)
        text = "".join(stream.chunks)
        assert [line.rsplit(" ", 1)[-1] for line in text.splitlines()] == ["first", "second"]
    finally:
        logging.getLogger().removeHandler(handler)


def test_concurrent_threads_lose_and_mangle_no_line() -> None:
    class Stream:
        def __init__(self) -> None:
            self.parts: list[str] = []

        def write(self, text: str) -> int:
            self.parts.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    stream = Stream()
    handler = configure("INFO", json_lines=True, stream=stream)
    logger = logging.getLogger("app.test_log_handler")
    start = threading.Barrier(8)

    def send(k: int) -> None:
        start.wait()
        for n in range(300):
            logger.info("line", extra={"sender": k, "n": n})

    try:
        threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        handler.flush()
        records = [json.loads(line) for line in "".join(stream.parts).splitlines()]
        assert len(records) == 8 * 300
        for k in range(8):  # each thread's lines in the order it logged them
            assert [r["n"] for r in records if r["sender"] == k] == list(range(300))
    finally:
        logging.getLogger().removeHandler(handler)
