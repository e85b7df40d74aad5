#!/usr/bin/env bash
# The FT ratio on the whole LP train set (issue 18): sketched eNTKs (K = 2^14) at the start of fine-tuning, FT and
# LP-FT, seeds 1-3, on BBC News (its whole train split, 1,780 examples, 5 classes, max_length 64) and SST-2 (a
# stratified train subset of 900, the LP train set of these runs), then the exact CB kernels (N = 225, its whole train
# split) for reference, then the table (table.md, table.json, ft_ratio.png) and LP's stationarity per task
# (stationarity.md / .json). One command, resumable: every `lpft ntk` reuses a
# finished kernel and resumes an interrupted one, so after any interruption rerun the same command.
#   bash results/ntk-whole-train/run.sh              # everything (hours on 2 CPU cores)
#   bash results/ntk-whole-train/run.sh --table      # only the table, from what has finished
# OUT (default runs/ntk-whole-train) holds the kernel folders; LPFT_DATA_DIR the data (default ../shared/data); LPFT_PYTHON picks the interpreter (default: python).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
py="${LPFT_PYTHON:-python}"
out="${OUT:-runs/ntk-whole-train}"
data="${LPFT_DATA_DIR:-../shared/data}"  # the benchmark files beside the repository, as results/study.toml reads them
if [[ "${1:-}" != "--table" ]]; then
    # --no-regression: the kernel-regression accuracies' cross-validated fit on (N*C)-column rows, not the sketch,
    # would dominate at these N (over 40 min at SST-2 N = 900); the FT ratio and the norms do not use it
    sketched=(--n-train 2000 --n-test 250 --sketch 16384 --no-predict --no-regression --out "$out" --data-dir "$data")
    for seed in 1 2 3; do
        for method in ft lp-ft; do
            "$py" -m lpft ntk --task sst2 --train-subset 900 --method "$method" --seed "$seed" "${sketched[@]}"
        done
    done
    for seed in 1 2 3; do
        for method in ft lp-ft; do
            "$py" -m lpft ntk --task bbc-news --method "$method" --seed "$seed" "${sketched[@]}"
        done
    done
    for seed in 1 2 3; do
        for method in ft lp-ft; do
            "$py" -m lpft ntk --task cb --method "$method" --seed "$seed" --n-train 250 --n-test 250 --no-predict \
                --out "$out" --data-dir "$data"
        done
    done
fi
"$py" "$here/table.py" "$out" --write "$here"
if [[ "${1:-}" != "--table" ]]; then
    # the mechanism behind CB's lower LP-FT ratio: LP's stationarity measured on each task (a forward pass, ~2 min)
    "$py" "$here/stationarity.py" "$out" --data-dir "$data" --write "$here"
fi
