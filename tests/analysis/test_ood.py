"""OOD evaluation of a run: the ID row reproduces the run, extra sets are checked for labels, CLI output."""

from __future__ import annotations

import numpy as np
import pytest

from lpft.analysis.ood import evaluate_ood, resolve_eval_set
from lpft.analysis.run_features import head_logits, run_features
from lpft.cli import main
from lpft.data import DataError
from lpft.report.tables import read_csv


def test_id_row_reproduces_the_run_and_a_copy_of_test_matches_it(toy_runs, toy_files):
    record = toy_runs["lp-ft"]
    rows = evaluate_ood(record, [str(toy_files / "test.csv"), str(toy_files / "shifted.csv")])
    assert [(r["set"], r["role"], r["n"]) for r in rows] == [("test", "ID", 18), ("test", "OOD", 18),
                                                             ("shifted", "OOD", 12)]
    assert rows[0]["accuracy"] == pytest.approx(record.metrics["test"]["accuracy"])
    for key in ("accuracy", "cs", "diff", "fdr"):  # the test file as an "OOD" set is the same data
        assert rows[1][key] == pytest.approx(rows[0][key])
    shifted = resolve_eval_set(record, str(toy_files / "shifted.csv"))
    logits = head_logits(record, run_features(record, shifted))
    assert rows[2]["diff"] > 0
    assert rows[2]["accuracy"] == pytest.approx(float(np.mean(logits.argmax(1) == shifted.labels)))


def test_bad_sets_are_named(toy_runs, tmp_path, shared_data):
    record = toy_runs["ft"]
    (tmp_path / "odd.csv").write_text("text,label\ngoal match,sport\nbread soup,weather\n")
    with pytest.raises(DataError, match=r"odd.csv, line 3: unknown label 'weather'.*sport"):
        resolve_eval_set(record, str(tmp_path / "odd.csv"))
    (tmp_path / "cols.csv").write_text("sentence,label\ngoal match,sport\n")
    with pytest.raises(DataError, match="cols.csv"):
        resolve_eval_set(record, str(tmp_path / "cols.csv"))
    assert resolve_eval_set(record, str(tmp_path / "cols.csv"), text_columns=("sentence",)).name == "cols"
    with pytest.raises(DataError, match="task 'cb' has labels entailment"):
        resolve_eval_set(record, "cb", str(shared_data))
    with pytest.raises(DataError, match="unknown task 'nosuch'"):
        resolve_eval_set(record, "nosuch")


def test_cli_evaluate_writes_a_report(toy_runs, toy_files, tmp_path, capsys):
    record = toy_runs["lora"]
    code = main(["evaluate", str(record.path), "--ood", str(toy_files / "shifted.csv"), "--limit", "6",
                 "--report", str(tmp_path / "ev"), "--cache-dir", "none"])
    out = capsys.readouterr().out
    assert code == 0 and "shifted  OOD   6" in out
    rows = read_csv(tmp_path / "ev" / "evaluation.csv")
    assert [r["role"] for r in rows] == ["ID", "OOD"]
    assert float(rows[0]["accuracy"]) == pytest.approx(record.metrics["test"]["accuracy"])
    code = main(["evaluate", str(tmp_path), "--ood", "cola-ood"])
    assert code == 2 and "is not a finished run" in capsys.readouterr().err
