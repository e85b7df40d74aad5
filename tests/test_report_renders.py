"""report/ renders, analysis/ computes: a compare and a study report are written from a hand-built TaskAnalysis in a
fresh interpreter that never imports torch, and they show the numbers they were handed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

SCRIPT = r"""
import sys
from pathlib import Path

import numpy as np

from lpft.analysis.calibration import calibration_report
from lpft.analysis.compare import CompareSettings, RunCalibration, TaskAnalysis
from lpft.analysis.tsne import TsnePanel
from lpft.methods.config import RunConfig
from lpft.report.compare import write_compare_report
from lpft.report.study import write_study_report

out = Path(sys.argv[1])
z = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5], [0.2, 0.1]])
y = np.array([0, 1, 1, 0])
cal = calibration_report(z, y, z, y)
e = np.exp(z - z.max(1, keepdims=True))
probs = e / e.sum(1, keepdims=True)
row = {"method": "ft", "seed": 1, "best_epoch": 2, "seconds": 12.0, "validation_accuracy": 0.5,
       "test_accuracy": 0.8125, "pretrained_cs": 0.9971, "pretrained_fdr": 3.0, "pretrained_norm_weight": 0.5,
       "pretrained_norm_bias": 0.0, "cs": 0.75, "diff": 2.5, "fdr": 7.0, "norm_weight": 0.625, "norm_bias": 0.125,
       "norm_init": 0.5, "norm_start": 0.5, "norm_end": 0.625, **cal, "folder": "runs/x", "reused": False}
steps = [{"step": s, "loss": 1.0 / (s + 1), "head_weight_norm": 0.5 + s, "head_bias_norm": 0.1,
          "mean_logit_norm": 0.2 + s} for s in range(3)]
panel = TsnePanel(np.arange(8.0).reshape(4, 2), np.array([[0.0, 1.0], [1.0, 0.0]]), y, ["no", "yes"], "ft")
analysis = TaskAnalysis(
    task="toy", settings=CompareSettings(), config=RunConfig(task="files", method="ft", seed=1, epochs=2),
    methods=["ft"], seeds=[1], metric_names=["accuracy"], splits={"test": {"size": 4}}, rows=[row],
    calibrations={"runs/x": RunCalibration("ft", 1, cal, y, probs, probs)}, tsne=[panel],
    steps=[("ft", 1, steps)])
write_compare_report(out / "compare", analysis)
write_study_report(out / "study", [analysis], {"source": "hand-built"})
heavy = [m for m in ("torch", "transformers", "peft") if m in sys.modules]
print("heavy:", heavy)
"""


def test_report_renders_a_hand_built_analysis_without_torch(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                            env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout
    md = (tmp_path / "compare" / "report.md").read_text()
    assert "| test accuracy (%) | 81.25 |" in md  # the handed number, formatted, not recomputed
    assert "| FT | 0.750 | 2.5 | 7 | 0.625 | 0.125 |" in md  # Table 1 row: CS, Diff, FDR, Norm(C), ‖b‖
    for name in ("runs.csv", "reliability.csv", "reliability-ft.png", "tsne.csv", "tsne.png", "dynamics.png"):
        assert (tmp_path / "compare" / name).stat().st_size > 0, name
    assert (tmp_path / "compare" / "tsne.csv").read_text().count("\n") == 1 + 4 + 2  # header, samples, head rows
    study = (tmp_path / "study" / "report.md").read_text()
    assert "| toy | accuracy | 81.25 |" in study and (tmp_path / "study" / "toy" / "report.md").is_file()
