"""Uniform frame sampling and bad videos."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitfas.data.video import count_frames, read_frame, sample_frames, uniform_indices
from vitfas.errors import BadVideoError

from .helpers import write_video


def test_uniform_indices() -> None:
    assert uniform_indices(10, 2) == [2, 7]
    assert uniform_indices(100, 4) == [12, 37, 62, 87]
    assert uniform_indices(3, 5) == [0, 1, 2]
    assert uniform_indices(5, None) == [0, 1, 2, 3, 4]
    assert uniform_indices(0, 3) == []


@pytest.mark.parametrize("ext", [".avi", ".mov", ".mp4"])
def test_sample_frames_content(tmp_path: Path, ext: str) -> None:
    p = write_video(tmp_path / f"v{ext}", frames=20)
    assert count_frames(p) == 20
    frames = sample_frames(p, 4)
    assert [i for i, _ in frames] == [2, 7, 12, 17]
    for i, rgb in frames:
        assert rgb.shape == (24, 32, 3)
        assert abs(float(rgb.mean()) - 10 * i) < 5  # frame i was written with value 10 i
    assert len(sample_frames(p, 50)) == 20
    assert abs(float(read_frame(p, 5).mean()) - 50) < 5


def test_bad_videos_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(BadVideoError, match="no such file"):
        sample_frames(tmp_path / "missing.avi", 3)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(BadVideoError, match="0 bytes") as info:
        sample_frames(empty, 3)
    assert str(empty) in str(info.value)
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(BadVideoError) as info:
        sample_frames(junk, 3)
    assert str(junk) in str(info.value)
    good = write_video(tmp_path / "t.avi", frames=30)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(good.read_bytes()[:300])
    with pytest.raises(BadVideoError) as info:
        sample_frames(cut, 3)
    assert str(cut) in str(info.value)
    with pytest.raises(BadVideoError, match=">= 1"):
        sample_frames(good, 0)
