#!/usr/bin/env bash
# Regenerate everything in results/ (report/, report/claims/) from a study file, by default the committed v2 study
# results/study.toml (STUDY=results/study-v1.toml: the v1 study, report-v1/): one command, resumable.
# Finished runs and eNTKs under runs/paper-study-v2 are reused, an interrupted run resumes from its last checkpoint,
# so after any interruption rerun the same command. Usage (from anywhere):
#   bash results/regenerate.sh            # the study, its report and the seven claims
#   bash results/regenerate.sh --dry-run  # its plan and estimated time only
# Extra arguments go to `lpft study` (e.g. --executor ray). LPFT_PYTHON picks the interpreter (default: python).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
exec nice -n 10 "${LPFT_PYTHON:-python}" -m lpft study "${STUDY:-results/study.toml}" "$@"
