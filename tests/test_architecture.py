"""The package's layer contracts (pyproject.toml, docs/architecture.md) hold.

Runs import-linter on the source tree, as `make lint` and `.ci/run` do, so `make test`
enforces the layers too. A second run with a contract the code is known to break proves the
check reads the real import graph rather than passing vacuously.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is not installed (dev extras)")

ROOT = Path(__file__).resolve().parents[1]

_RUN = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))"
)


def _lint(config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", _RUN, str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=110)


@pytest.mark.timeout(120)
def test_layer_contracts_are_kept() -> None:
    res = _lint(ROOT / "pyproject.toml")
    assert res.returncode == 0, f"import-linter found broken contracts:\n{res.stdout}{res.stderr}"
    assert "0 broken" in res.stdout, res.stdout


@pytest.mark.timeout(120)
def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    # train really imports metrics (train/scoring.py); a contract forbidding it must fail
    cfg = tmp_path / "contracts.toml"
    cfg.write_text(
        '[tool.importlinter]\nroot_package = "vitfas"\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "train may not import metrics"\ntype = "forbidden"\n'
        'source_modules = ["vitfas.train"]\nforbidden_modules = ["vitfas.metrics"]\n'
    )
    res = _lint(cfg)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "vitfas.train.scoring -> vitfas.metrics" in res.stdout, res.stdout
