"""Errors that the CLI turns into a one-line message instead of a traceback."""


class L0EvalError(Exception):
    """Base class for every error l0eval reports to a user as one line."""


class SpecError(L0EvalError, ValueError):
    """A family or toy spec is malformed (unknown key, bad value, impossible combination)."""


class ResultsError(L0EvalError):
    """A results or checkpoint file cannot be used (corrupt, other spec, other schema)."""
