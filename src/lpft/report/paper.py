"""The paper's own numbers (Tomihari & Sato 2024, RoBERTa-base), printed beside ours where the task matches.

Verbatim from the camera-ready text (see ``shared/reference/paper.md``). Metrics are percentages (CoLA: Matthews
correlation x 100); Table 3 values are percentages too. ``None`` marks a cell the paper leaves empty.
"""

from __future__ import annotations

MODEL = "RoBERTa-base"

#: Table 8: test metric (accuracy; CoLA: MCC) per task and method.
TABLE8 = {
    "cb": {"lp": 77.86, "ft": 81.43, "lp-ft": 84.64, "lora": 77.50, "lp-lora": 75.71},
    "rte": {"lp": 57.69, "ft": 74.73, "lp-ft": 76.75, "lora": 72.85, "lp-lora": 74.08},
    "sst2": {"lp": 86.31, "ft": 92.41, "lp-ft": 94.52, "lora": 50.92, "lp-lora": 94.22},
    "wic": {"lp": 61.32, "ft": 65.89, "lp-ft": 66.14, "lora": 62.70, "lp-lora": 64.29},
    "cola": {"lp": 46.27, "ft": 58.75, "lp-ft": 57.95, "lora": 57.29, "lp-lora": 58.21},
    "mrpc": {"lp": 73.09, "ft": 88.14, "lp-ft": 87.60, "lora": 68.38, "lp-lora": 87.79},
    "wsc": {m: 63.46 for m in ("lp", "ft", "lp-ft", "lora", "lp-lora")},
    "boolq": {"lp": 64.66, "ft": 78.69, "lp-ft": 79.00, "lora": 77.59, "lp-lora": 77.67},
}

#: Table 1: (CS(F), Diff(F), FDR(F), Norm(C)) per task and row ("pretrained" or a method).
TABLE1 = {
    "cb": {"pretrained": (0.997, None, 8.14e4, 0.951), "lp": (0.997, None, 8.14e4, 24.8),
           "ft": (0.336, 22.1, 7.39e8, 0.960), "lora": (0.499, 19.2, 8.91e6, 1.43),
           "lp-ft": (0.804, 12.0, 6.47e6, 24.8), "lp-lora": (0.837, 9.08, 2.10e6, 24.9)},
    "rte": {"pretrained": (0.996, None, 85.9, 0.776), "lp": (0.996, None, 85.9, 31.0),
            "ft": (0.260, 21.6, 1.42e4, 0.784), "lora": (0.759, 10.6, 2.97e3, 1.21),
            "lp-ft": (0.942, 4.70, 157, 31.0), "lp-lora": (0.924, 4.63, 20.6, 31.0)},
}

#: Table 3 (RTE): ECE and MCE in percent, (without TS, with TS).
TABLE3 = {
    "rte": {"ft": {"ece": (21.16, 5.13), "mce": (53.11, 25.87)},
            "lp-ft": {"ece": (21.72, 5.48), "mce": (63.95, 13.94)},
            "lora": {"ece": (11.92, 6.17), "mce": (25.04, 13.75)},
            "lp-lora": {"ece": (18.14, 5.72), "mce": (40.46, 18.82)}},
}

#: Table 2 (CB): eNTK at the start of FT. ``rank_F`` / ``frobenius_F``: the FT-effective kernel, ``rank_full``:
#: the whole NTK, ``pretrained``: the pre-train-effective kernel P (the same for every method); FN in units of 1e3.
TABLE2 = {
    "cb": {"pretrained": {"rank": 18, "frobenius_1e3": 51.0},
           "ft": {"rank_F": 608, "frobenius_F_1e3": 13.9, "rank_full": 210, "ft_ratio": 0.1987},
           "lora": {"rank_F": 500, "frobenius_F_1e3": 0.0226, "rank_full": 20, "ft_ratio": 0.0004},
           "lp-ft": {"rank_F": 344, "frobenius_F_1e3": 7250, "rank_full": 344, "ft_ratio": 1.0000},
           "lp-lora": {"rank_F": 307, "frobenius_F_1e3": 15.1, "rank_full": 188, "ft_ratio": 1.0137}},
}
