"""``Explorer``: the callbacks of the app's four tabs, one object the layout wires to its widgets.

Each tab's callbacks live in their own module: ``app.explore``, ``app.compare``,
``app.runs_tab`` and ``app.batch``; what they share is in ``app.shared``.
"""

from __future__ import annotations

from .batch import MAX_BATCH_ROWS, BatchTab
from .compare import CompareTab
from .explore import ExploreTab
from .runs_tab import RunsTab
from .shared import (
    AUTO_CHECKER,
    BATCH_METHODS,
    CHECKERS,
    COMPARE_SEGMENTATIONS,
    NO_CHECKER,
    SCALES,
    SEGMENTATIONS,
    UI_METHODS,
    VIEWS,
)

__all__ = ["AUTO_CHECKER", "BATCH_METHODS", "CHECKERS", "COMPARE_SEGMENTATIONS", "MAX_BATCH_ROWS", "NO_CHECKER",
           "SCALES", "SEGMENTATIONS", "UI_METHODS", "VIEWS", "Explorer"]


class Explorer(ExploreTab, CompareTab, RunsTab, BatchTab):
    """Every tab's callbacks over one model cache, path guard and download folder."""
