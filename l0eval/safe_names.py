"""Names that become file or folder names (a family's results file, cache folder, plot) are checked
here, at every such place: a name like ``../../x`` or one with a NUL must never leave its folder."""

from __future__ import annotations

import re

from l0eval.errors import L0EvalError

MAX_LENGTH = 100
_ALLOWED = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def path_component(name: str, what: str = "family name") -> str:
    """``name`` itself if it is a safe single path component, else a one-line L0EvalError."""
    if not isinstance(name, str) or len(name) > MAX_LENGTH or not _ALLOWED.fullmatch(name):
        shown = repr(name) if len(str(name)) <= 60 else repr(str(name)[:60]) + f"... ({len(name)} characters)"
        raise L0EvalError(f"{what} {shown} cannot be used in a file name: use letters, digits, '_', '.' and '-' "
                          f"(not first), at most {MAX_LENGTH} characters")
    return name
