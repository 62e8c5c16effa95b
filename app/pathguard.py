"""Which paths the app may read: the allowed roots, and the guard every typed path and model goes through.

The app reads only inside *allowed roots* (the repo's ``assets/`` and ``runs/``
by default, plus every ``--allow DIR`` given at launch) and files uploaded
through the UI. Every path a user types goes through ``PathGuard.resolve``,
every file inside an allowed folder through ``PathGuard.inside`` when it is
opened, and every link of a model's adapter chain (an adapter, its base, that
base's base) through ``PathGuard.check_model`` before anything is read from it.
All follow symbolic links first, so a link inside ``runs/`` cannot lead out of
the roots, and refusals read the same whether or not the outside path exists.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from acpo.resources import CHECKOUT

# Relative paths, runs/ and the names shown are taken from the repository in a checkout, and from the
# working folder when installed (`acpo-app` reads the runs/ that `acpo-train` wrote there).
REPO_ROOT = CHECKOUT or Path.cwd()


class InputError(ValueError):
    """Bad input from the user (a path, a file, a field), with what is wrong and the fix."""


class PathGuard:
    """Resolves user-typed paths and refuses any outside the allowed roots."""

    def __init__(self, roots: Iterable[str | Path]):
        self.roots = [Path(r).expanduser().resolve() for r in roots]

    def allowed(self, path: Path) -> bool:
        """Whether ``path``, every link followed (``realpath``), lies inside a root."""
        path = Path(os.path.realpath(path))
        return any(path == r or path.is_relative_to(r) for r in self.roots)

    def inside(self, path: Path, what: str = "file") -> Path:
        """The real path of ``path``, a file the app is about to open; InputError if a link leads out of the roots."""
        if not self.allowed(path):
            raise InputError(f"{what} '{display_path(path)}' is a link to outside the folders this app may read; "
                             "refused")
        return Path(os.path.realpath(path))

    def model_source(self, name: str) -> str:
        """What the app passes to ``load_policy`` for a typed model ``name``: a checked local path, or a hub id.

        A typed path is read relative to the repo root first (:meth:`resolve`);
        the folder's files must all lie inside the roots (a weights file may be
        a link). Its adapter chain is checked link by link by :meth:`check_model`
        as ``load_policy`` follows it.
        """
        if not self.looks_local(name):
            if name.count("/") > 1:
                raise InputError(f"model path '{name}' does not exist")
            return name  # a hub id; loads only where the hub is reachable
        path = self.resolve(name, "model path")
        self._check_model_files(path, "model file")
        return str(path)

    def check_model(self, name: str) -> None:
        """``load_policy``'s ``check``: one link of an adapter chain (the model, an adapter's base), read as
        transformers reads it (relative to the working directory), must lie inside the roots with all its files.
        Outside paths get one message whether or not they exist; a hub id passes."""
        local = Path(name).expanduser()
        if local.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
            if not self.allowed(local):
                raise InputError(self.outside_message(name, "the adapter's base model"))
            self._check_model_files(local, "base model file")

    def _check_model_files(self, path: Path, what: str) -> None:
        if path.is_dir():
            for f in path.iterdir():
                self.inside(f, what)

    def candidates(self, text: str) -> list[Path]:
        """Where a typed path could point: relative to the repo root, then as given."""
        p = Path(text.strip()).expanduser()
        return [p] if p.is_absolute() else [REPO_ROOT / p, p]

    def resolve(self, text: str, what: str = "path") -> Path:
        """The existing path ``text`` names, inside an allowed root; else InputError."""
        if not text or not text.strip():
            raise InputError(f"no {what} given")
        for p in self.candidates(text):
            if p.exists():
                if not self.allowed(p):
                    raise InputError(self.outside_message(text, what))
                return p.resolve()
        # Do not tell whether a path outside the roots exists.
        if not any(self.allowed(p) for p in self.candidates(text)):
            raise InputError(self.outside_message(text, what))
        raise InputError(f"{what} '{text}' does not exist")

    def outside_message(self, text: str, what: str) -> str:
        roots = ", ".join(short_path(r) for r in self.roots)
        return (
            f"{what} '{text}' is outside the folders this app may read ({roots}); "
            "upload the file instead, or restart the app with --allow DIR"
        )

    def looks_local(self, text: str) -> bool:
        """True when ``text`` names an existing local path (else it may be a hub id)."""
        return any(p.exists() for p in self.candidates(text)) or text.strip().startswith((".", "/", "~"))


def short_path(path: Path) -> str:
    """A folder as a message may name it: relative to the repo root, else only its last part."""
    shown = display_path(path)
    return shown if not Path(shown).is_absolute() else f"…/{Path(shown).name}"


def display_path(path: Path) -> str:
    """A path relative to the repo root when it is inside it (shorter, portable)."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
