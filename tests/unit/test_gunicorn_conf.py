"""gunicorn.conf.py hooks that change how a worker runs."""

from __future__ import annotations

import gc
import runpy
from pathlib import Path


def test_a_built_worker_hides_its_long_lived_objects_from_the_collector() -> None:
    conf = runpy.run_path(str(Path(__file__).parents[2] / "gunicorn.conf.py"))
    assert gc.get_freeze_count() == 0
    try:
        conf["post_worker_init"](None)
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
