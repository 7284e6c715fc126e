"""`vitfas data ...` through the CLI entry point: exit codes, outputs, named-file errors."""

from __future__ import annotations

import json
from pathlib import Path

from vitfas import cli
from vitfas.data.manifest import read_manifest, resolve_path

from .helpers import write_image


def test_index_writes_relative_manifest(tmp_path: Path, capsys) -> None:
    root = tmp_path / "ds"
    write_image(root / "live" / "a.png")
    write_image(root / "spoof" / "print" / "b.png")
    out = tmp_path / "manifests" / "m.csv"
    assert cli.main(["data", "index", "--layout", "folder", str(root), "-o", str(out),
                     "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == 2
    rows = read_manifest(out)
    assert rows[0]["path"] == "../ds/live/a.png"
    assert resolve_path(out, rows[0]) == (root / "live" / "a.png").resolve()


def test_index_errors(tmp_path: Path, capsys) -> None:
    root = tmp_path / "ds"
    write_image(root / "live" / "a.png")
    (root / "spoof").mkdir()
    (root / "spoof" / "z.png").write_bytes(b"")
    assert cli.main(["data", "index", "-l", "folder", str(root), "-o",
                     str(tmp_path / "m.csv")]) == 1
    err = capsys.readouterr().err
    assert "vitfas data: error:" in err and "z.png: empty file (0 bytes)" in err
    assert cli.main(["data", "index", "-l", "nope", str(root), "-o", "x.csv"]) == 2


def test_protocol_and_prepare_commands(tmp_path: Path, capsys) -> None:
    rows_by_ds = {}
    for ds in ("oulu-npu", "casia-fasd", "replay-attack", "msu-mfsd"):
        for label in ("live", "spoof"):
            write_image(tmp_path / ds / label / "x.png", 100 if label == "live" else 30)
        m = tmp_path / f"{ds}.csv"
        assert cli.main(["data", "index", "-l", "folder", str(tmp_path / ds), "--dataset", ds,
                         "-o", str(m)]) == 0
        rows_by_ds[ds] = m
    for m in rows_by_ds.values():  # give every row a split
        rows = read_manifest(m)
        from vitfas.data.manifest import write_manifest

        write_manifest(m, [{**r, "split": "train"} for r in rows])
    out = tmp_path / "p" / "ocim_I.csv"
    assert cli.main(["data", "protocol", "ocim", "--target", "I", *map(str, rows_by_ds.values()),
                     "-o", str(out)]) == 0
    rows = read_manifest(out)
    assert sorted((r["dataset"], r["split"]) for r in rows if r["label"] == "live") == [
        ("casia-fasd", "train"), ("msu-mfsd", "train"), ("oulu-npu", "train"),
        ("replay-attack", "test")]
    assert all(resolve_path(out, r).is_file() for r in rows)
    capsys.readouterr()
    assert cli.main(["-q", "data", "prepare", str(out), "-o", str(tmp_path / "crops"),
                     "--detector", "none", "--size", "16", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["total"]["crops"] == 8 and s["total"]["unreadable"] == 0
    assert len(read_manifest(tmp_path / "crops" / "manifest.csv")) == 8
    # human summary: the columns say what they count; a rerun with another size names it
    assert cli.main(["-q", "data", "prepare", str(out), "-o", str(tmp_path / "crops"),
                     "--detector", "none", "--size", "16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["dataset", "inputs", "crops", "frames", "inputs", "unreadable"]
    assert lines[2].split() == ["no", "face", "no", "face", "inputs"]
    assert "no face: a failure to acquire, FTA" in lines[-1]
    assert cli.main(["-q", "data", "prepare", str(out), "-o", str(tmp_path / "crops"),
                     "--detector", "none", "--size", "24"]) == 1
    err = capsys.readouterr().err
    assert "(recipe.size: 16 before, 24 now)" in err and "--overwrite" in err
