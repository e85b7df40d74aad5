"""The paper's seven claims in one package: the rules, collecting what they are tested on, rendering the report.

=====================  ===================================================================================
module                 concern
=====================  ===================================================================================
:mod:`.rules`          the statistics, intervals, gates and verdict rules (v2, ``docs/claims.md``): pure
                       functions over plain rows, each tested on constructed rows
:mod:`.collect`        rows from folders (runs, compare / evaluate / norm-sweep reports, eNTK folders) or from
                       a study's own analysis objects (no CSV round trip)
:mod:`.verdicts`       :func:`compute`: collect, apply the rules, one verdict per claim and task
:mod:`.render`         the report folder (Markdown, CSV, figures); no torch
=====================  ===================================================================================
"""

from .render import study_section, summary_rows, verdict_table, write_report
from .verdicts import CLAIMS, ClaimsResult, claim_verdicts, compute

__all__ = ["CLAIMS", "ClaimsResult", "claim_verdicts", "compute", "study_section", "summary_rows", "verdict_table",
           "write_report"]
