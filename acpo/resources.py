"""Where the bundled files are (the demo policy, sample traces, the credit-fidelity table).

In a checkout they are the repository's ``assets/``; a wheel (``pip install .``)
carries a copy inside the package, ``acpo/assets/`` (pyproject.toml maps it).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_INSTALLED_ASSETS = PACKAGE_DIR / "assets"

# The repository when running from a checkout (or an editable install), None when installed from a wheel.
CHECKOUT: Path | None = None if _INSTALLED_ASSETS.is_dir() else PACKAGE_DIR.parent
ASSETS: Path = _INSTALLED_ASSETS if CHECKOUT is None else CHECKOUT / "assets"
