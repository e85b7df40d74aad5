"""The study report's eNTK section, from eNTK folders' stats.json (their producer is tested in tests/ntk/)."""

from __future__ import annotations

from lpft.io import write_json
from lpft.report.study import write_study_report
from lpft.report.tables import read_csv


def stats(method, seed, start, rescaled=None, change=None):
    kernels = {name: {"rank": rank, "frobenius": fn} for name, rank, fn in (("P", 3, 2.0), ("F", 7, 1.0),
                                                                            ("P+F", 7, 2.5))}
    out = {"method": method, "seed": seed, "kernels": kernels, "ft_ratio": 0.5, "start_head_norm": start,
           "head_norm": rescaled}
    if change is not None:
        out["predict"] = {"optimizer": "sgd", "features_test": {"actual_norm": change}}
    return out


def test_ntk_section_shows_table2_kernels_and_rescaled_sgd_starts(tmp_path):
    folders = []
    for i, s in enumerate([stats("ft", 1, 0.64), stats("lp-ft", 1, 2.0, rescaled=2.0, change=0.125)]):
        folders.append(tmp_path / f"k{i}")
        folders[-1].mkdir()
        write_json(folders[-1] / "stats.json", s)
    report = write_study_report(tmp_path / "report", [], {"source": "t"}, ntk={"cb": folders})
    md = (report / "report.md").read_text()
    assert f"| FT | 1 | 0.64 | 3 / 7 / 7 | 2.5 | 0.5000 | – | `{folders[0]}` |" in md
    assert f"| LP-FT | 1 | 2 (rescaled) | 3 / 7 / 7 | 2.5 | 0.5000 | 0.125 (sgd) | `{folders[1]}` |" in md
    rows = read_csv(report / "ntk.csv")
    assert [(r["method"], r["rescaled"], r["feature_change"]) for r in rows] == [("ft", "", ""),
                                                                               ("lp-ft", "2.0", "0.125")]
