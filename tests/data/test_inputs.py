"""The input walker shared by predict, explain and demo --predict."""

from __future__ import annotations

from pathlib import Path

from vitfas.data.inputs import expand_inputs, kind_of


def test_walker_keeps_files_walks_folders_sorted(tmp_path: Path) -> None:
    for rel in ["d/b.png", "d/a.JPG", "d/sub/c.mp4", "d/notes.txt", "d/.hidden.png",
                "lone.xyz"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    got = expand_inputs([tmp_path / "lone.xyz", tmp_path / "d", tmp_path / "missing.png"])
    assert got == [tmp_path / "lone.xyz", tmp_path / "d/a.JPG", tmp_path / "d/b.png",
                   tmp_path / "d/sub/c.mp4", tmp_path / "missing.png"]
    assert [kind_of(p) for p in got] == ["image", "image", "image", "video", "image"]
