"""Shipped configs (vitfas config list/show) and where a bad config value is blamed."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from vitfas.cli import main
from vitfas.configs import config_text, list_configs
from vitfas.errors import BadConfigError
from vitfas.train.config import load_config


def _cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(list(argv))
    return rc, buf.getvalue()


def test_shipped_configs_listed_shown_and_usable_by_name(tmp_path: Path) -> None:
    names = list_configs()
    assert {"synthetic_halftone", "imagefolder", "fas_vit_small_adapters",
            "pretrain_mae"} <= set(names)
    assert all(what for what in names.values()), names  # each says what it is for
    rc, out = _cli("config", "list")
    assert rc == 0 and [ln.split()[0] for ln in out.splitlines()] == list(names)
    rc, out = _cli("config", "show", "synthetic_halftone")
    assert rc == 0 and out == config_text("synthetic_halftone")
    assert yaml.safe_load(out)["model"]["name"] == "vit_tiny_patch16_224"
    with pytest.raises(BadConfigError, match="no shipped config named 'nope'.*imagefolder"):
        config_text("nope")


def test_missing_config_file_names_cwd_and_shipped_names(tmp_path: Path) -> None:
    from vitfas.train.run import TrainConfig

    with pytest.raises(BadConfigError, match=r"relative paths are taken from the current "
                                             r"folder.*synthetic_halftone"):
        load_config(TrainConfig, tmp_path / "missing.yaml")


def test_bad_value_blames_its_source(tmp_path: Path) -> None:
    from vitfas.train.run import TrainConfig

    good = tmp_path / "good.yaml"
    good.write_text(config_text("synthetic_halftone"))
    # a command-line value: the override is named, not the file
    with pytest.raises(BadConfigError) as err:
        load_config(TrainConfig, good, ["output=/x"])
    msg = str(err.value)
    assert msg.startswith("command-line override 'output=/x'") and "good.yaml" not in msg
    with pytest.raises(BadConfigError, match=r"^command line: override 'nokey=1'"):
        load_config(TrainConfig, good, ["nokey=1"])
    # a value in the file: the file is named even when unrelated overrides are given
    bad = tmp_path / "bad.yaml"
    bad.write_text(config_text("synthetic_halftone").replace("lr: 1.0e-3", "lr: fast"))
    with pytest.raises(BadConfigError, match=r"^\S*bad.yaml: optim.lr: expected a number"):
        load_config(TrainConfig, bad, ["trainer.epochs=1"])
