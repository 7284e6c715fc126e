"""``vitfas eval --scores`` on hand-made score lists, and ``vitfas eval --compare``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitfas.cli import main
from vitfas.data.manifest import write_manifest
from vitfas.errors import BadDataError
from vitfas.metrics import Scores, select_threshold
from vitfas.metrics.compare import compare_markdown, compare_rows
from vitfas.metrics.evaluation import run_eval_scores
from vitfas.metrics.scorefile import scores_from_file

# (path, label, attack_type, split, score); "" = the method could not score it (FTA)
ROWS = [
    ("dev/a.png", "live", "none", "dev", "0.9"),
    ("dev/b.png", "live", "none", "dev", "0.6"),
    ("dev/c.png", "live", "none", "dev", "0.4"),
    ("dev/d.png", "spoof", "print", "dev", "0.3"),
    ("dev/e.png", "spoof", "print", "dev", "0.7"),
    ("dev/f.png", "spoof", "replay", "dev", "0.2"),
    ("test/g.png", "live", "none", "test", "0.8"),
    ("test/h.png", "live", "none", "test", ""),
    ("test/i.png", "spoof", "print", "test", "0.1"),
    ("test/j.png", "spoof", "replay", "test", "0.55"),
    ("train/k.png", "live", "none", "train", None),  # no score needed for train rows
]


def _manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "data" / "manifest.csv", [
        {"path": p, "label": lab, "attack_type": at, "dataset": "d", "split": sp}
        for p, lab, at, sp, _ in ROWS])


def _scores(tmp_path: Path, rows: list[tuple[str, str]], name: str = "s.csv") -> Path:
    f = tmp_path / name
    f.write_text("path,score\n" + "".join(f"{p},{s}\n" for p, s in rows))
    return f


def _hand_rows(scale: float = 1.0) -> list[tuple[str, str]]:
    return [(p, "" if s == "" else f"{float(s) * scale:g}") for p, _, _, _, s in ROWS
            if s is not None]


def test_fixed_threshold_figures_by_hand(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    out = run_eval_scores(_scores(tmp_path, _hand_rows()), m, threshold=0.5,
                          out_dir=tmp_path / "rep")
    dev = out["frame"]["splits"]["dev"]
    at = dev["at_threshold"]
    # dev at 0.5: live 0.4 rejected -> BPCER 1/3; print 0.7 accepted -> APCER print 1/2,
    # replay 0; pooled 1/3; HTER (1/3 + 1/3)/2; ACER (1/2 + 1/3)/2
    assert at["bpcer"] == pytest.approx(1 / 3)
    assert at["apcer"] == {"print": 0.5, "replay": 0.0}
    assert at["apcer_pooled"] == pytest.approx(1 / 3)
    assert at["hter"] == pytest.approx(1 / 3) and at["acer"] == pytest.approx(5 / 12)
    # AUC: pairs live > attack: 0.9 beats 3, 0.6 beats 2, 0.4 beats 2 -> 7/9
    assert dev["auc"] == pytest.approx(7 / 9)
    test = out["frame"]["splits"]["test"]
    # test: the unscored live row is an FTA (rejected): BPCER 1/2; 0.55 accepted: APCER 1/2
    assert test["counts"]["fta_bona_fide"] == 1
    assert test["at_threshold"]["bpcer"] == 0.5 and test["at_threshold"]["apcer_pooled"] == 0.5
    # AUC: 0.8 beats both attacks, the FTA (below every score) beats none -> 2/4
    assert test["auc"] == pytest.approx(0.5)
    assert out["meta"]["model_id"] == "scores:s.csv" and out["meta"]["fta_rows"] == 1
    saved = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert saved["frame"]["splits"]["dev"]["at_threshold"]["hter"] == pytest.approx(1 / 3)

    # any higher-is-more-live scale: x10 scores with a x10 threshold give the same figures
    out10 = run_eval_scores(_scores(tmp_path, _hand_rows(10.0), "s10.csv"), m, threshold=5.0)
    assert out10["frame"]["splits"]["dev"]["at_threshold"]["hter"] == pytest.approx(1 / 3)
    assert out10["frame"]["splits"]["test"]["auc"] == pytest.approx(0.5)


def test_default_threshold_is_the_metrics_layer_dev_rule(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    m = _manifest(tmp_path)
    s = _scores(tmp_path, _hand_rows())
    assert main(["eval", "--scores", str(s), str(m), "-o", str(tmp_path / "r"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    dev = Scores.from_arrays([0.9, 0.6, 0.4, 0.3, 0.7, 0.2], [1, 1, 1, 0, 0, 0],
                             ["none"] * 3 + ["print", "print", "replay"])
    want = select_threshold(dev, "eer", "dev")
    assert out["frame"]["threshold"] == want.to_dict()
    assert out["frame"]["splits"]["test"]["at_threshold"]["threshold"] == want.value
    # eval's own scores.csv is a valid score file and gives the same metrics back
    again = run_eval_scores(tmp_path / "r" / "scores.csv", m)
    assert again["frame"]["splits"] == out["frame"]["splits"]


def test_unmatched_and_missing_paths(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    m = _manifest(tmp_path)
    rows = [*_hand_rows(), ("dev/nope.png", "0.5"), ("./other/x.png", "0.1")]
    bad = _scores(tmp_path, rows, "bad.csv")
    with pytest.raises(BadDataError, match=r"2 score row\(s\) match no row") as e:
        scores_from_file(bad, m)
    assert "dev/nope.png" in str(e.value) and "./other/x.png" in str(e.value)
    assert main(["eval", "--scores", str(bad), str(m)]) == 1
    assert "dev/nope.png" in capsys.readouterr().err

    # ./ prefixes and backslashes still match; a dev row without a score is an error...
    short = [(("./" + p) if i % 2 else p.replace("/", "\\"), s)
             for i, (p, s) in enumerate(_hand_rows()) if p != "dev/b.png"]
    f = _scores(tmp_path, short, "short.csv")
    with pytest.raises(BadDataError, match=r"no score for 1 row\(s\).*dev/b.png.*--missing fta"):
        scores_from_file(f, m)
    # ...or, with --missing fta, a failure to acquire (a rejected bona fide presentation)
    out = run_eval_scores(f, m, threshold=0.5, missing="fta")
    assert out["meta"]["rows_without_score"] == 1
    dev = out["frame"]["splits"]["dev"]
    assert dev["counts"]["fta_bona_fide"] == 1
    assert dev["at_threshold"]["bpcer"] == pytest.approx(2 / 3)

    dup = _scores(tmp_path, [*_hand_rows(), ("dev/a.png", "0.1")], "dup.csv")
    with pytest.raises(BadDataError, match="two score rows"):
        scores_from_file(dup, m)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("file,prob\nx,1\n")
    with pytest.raises(BadDataError, match=r"lacks column\(s\) \['path', 'score'\]"):
        scores_from_file(nocol, m)


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", "--scores", "s.csv"]) == 2
    assert "takes one MANIFEST" in capsys.readouterr().err
    assert main(["eval", "only_one_arg"]) == 2
    assert main(["eval", "--compare", "a", "--scores", "s.csv"]) == 2


def test_compare_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    m = _manifest(tmp_path)
    run_eval_scores(_scores(tmp_path, _hand_rows(), "a.csv"), m, threshold=0.5,
                    out_dir=tmp_path / "A")
    flipped = [(p, "" if s == "" else f"{1 - float(s):g}") for p, s in _hand_rows()]
    run_eval_scores(_scores(tmp_path, flipped, "b.csv"), m, threshold=0.5,
                    out_dir=tmp_path / "B")
    rows = compare_rows([tmp_path / "A", tmp_path / "B" / "metrics.json"])
    assert [(r["split"], Path(r["run"]).name) for r in rows] == [
        ("dev", "A"), ("dev", "metrics.json"), ("test", "A"), ("test", "metrics.json")]
    # B = 1 - A at 0.5 (ties accepted): dev live 0.1, 0.4 rejected, 0.6 accepted -> BPCER
    # 2/3; attacks 0.7, 0.3, 0.8 -> print 1/2, replay 1 accepted: APCER max 1 (replay),
    # pooled 2/3; AUC = 1 - 7/9 = 2/9
    b = rows[1]
    assert b["bpcer"] == pytest.approx(2 / 3) and b["apcer_max"] == 1.0
    assert b["apcer_max_type"] == "replay" and b["auc"] == pytest.approx(2 / 9)
    assert b["hter"] == pytest.approx(2 / 3)
    md = compare_markdown(rows)
    lines = md.splitlines()
    assert lines[2] == ("| split | run | model | threshold | HTER | APCER (max) | BPCER | "
                        "AUC | EER |")
    assert lines[4] == (f"| dev | {tmp_path / 'A'} | scores:a.csv | 0.5 (given on the "
                        "command line) | 33.33% | 50.00% (print) | 33.33% | 0.7778 | "
                        f"{rows[0]['eer'] * 100:.2f}% |")
    assert len(lines) == 8
    assert main(["eval", "--compare", str(tmp_path / "A"), str(tmp_path / "B")]) == 0
    assert capsys.readouterr().out == compare_markdown(
        compare_rows([str(tmp_path / "A"), str(tmp_path / "B")]))
    with pytest.raises(BadDataError, match="no metrics.json"):
        compare_rows([tmp_path / "nowhere"])
