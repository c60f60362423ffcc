"""bootc's ``--progress-fd`` JSON lines: event shapes, rate limit, a broken descriptor."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bootree.errors import BootreeError
from bootree.host.progress import ProgressJsonl, open_progress_fd
from bootree.oci.progress import LayerTask, PullPlan

D = "sha256:" + "ab" * 32


def _read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pull_events_follow_bootc(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    a = LayerTask("sha256:" + "1" * 64, 100, "ostree chunk")
    b = LayerTask("sha256:" + "2" * 64, 50, "layer")
    with open(path, "wb") as f:
        p = ProgressJsonl(f.fileno())
        p.plan(PullPlan(D, 3, 170, (a, b)))
        p.layer_started(a)
        p.layer_started(b)  # within 200 ms of the last line: dropped (lossy)
        p.layer_bytes(a, 40)
        p.layer_done(a)  # always written
        time.sleep(0.21)
        p.layer_bytes(b, 10)
        p.layer_done(b)
        p.importing(False)
        p.importing(True)
        for step in range(5):
            p.staging(D, step)
    ev = _read(path)
    assert ev[0] == {"type": "Start", "version": "0.1.0"}
    assert ev[1]["type"] == "ProgressBytes" and ev[1]["subtasks"] == [
        {"subtask": "ostree chunk", "description": "ostree chunk: 111111111111111111111", "id": "1" * 21,
         "bytesCached": 0, "bytes": 0, "bytesTotal": 100}]
    done_a = ev[2]
    assert done_a["bytes"] == 100 and done_a["steps"] == 1 and done_a["stepsTotal"] == 2
    assert done_a["bytesCached"] == 20 and done_a["stepsCached"] == 1 and done_a["bytesTotal"] == 150
    assert ev[3]["bytes"] == 110 and [t["bytes"] for t in ev[3]["subtasks"]] == [100, 10]  # type: ignore[union-attr]
    assert ev[4]["bytes"] == 150 and ev[4]["steps"] == 2
    assert [(e["task"], e["steps"]) for e in ev[5:]] == [("importing", 0), ("importing", 1)] + [
        ("staging", s) for s in (0, 1, 1, 2, 3)]
    assert [s["subtask"] for s in ev[-1]["subtasks"]] == ["merging", "deploying", "bound_images", "cleanup"]  # type: ignore[union-attr]
    assert all(s["completed"] for s in ev[-1]["subtasks"])  # type: ignore[union-attr]
    assert not ev[-2]["subtasks"][-1]["completed"]  # type: ignore[index]


def test_a_broken_descriptor_stops_events_not_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    r, w = os.pipe()
    os.close(r)
    try:
        p = ProgressJsonl(w)
        p.importing(False)
        p.importing(True)
    finally:
        os.close(w)
    assert capsys.readouterr().err.count("Failed to write to jsonl") == 1


@pytest.mark.parametrize("fd", [0, 1, 2])
def test_standard_streams_are_refused(fd: int) -> None:
    with pytest.raises(BootreeError, match=f"Cannot use fd {fd} for progress JSON"):
        open_progress_fd(fd)


def test_a_closed_descriptor_is_refused() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(BootreeError, match="--progress-fd"):
        open_progress_fd(w)
