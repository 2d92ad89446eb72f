"""Errors that the CLI turns into a one-line message instead of a traceback."""


class L0EvalError(Exception):
    """Base class for every error l0eval reports to a user as one line."""


class SpecError(L0EvalError, ValueError):
    """A family or toy spec is malformed (unknown key, bad value, impossible combination)."""


class ResultsError(L0EvalError):
    """A results or checkpoint file cannot be used (corrupt, other spec, other schema)."""


def library_error_line(exc: BaseException) -> str | None:
    """An error from the OS or a library l0eval relies on as one line naming what it was about, or None
    for anything else (an l0eval bug: the CLI then points at ``--debug``)."""
    import errno
    import json

    if isinstance(exc, OSError) and exc.errno is not None:
        where = f": {exc.filename}" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return f"no space left on the device{where}"
        return f"{exc.strerror or errno.errorcode.get(exc.errno, exc.errno)}{where}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg} at line {exc.lineno})"
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({exc.reason} at byte {exc.start})"
    if isinstance(exc, MemoryError):
        return "out of memory: use smaller sizes (fewer samples, a smaller d_sae) or a machine with more memory"
    module = type(exc).__module__ or ""
    if module.startswith(("huggingface_hub", "httpx", "httpcore")):
        return f"Hugging Face hub ({_hub_endpoint()}): {type(exc).__name__}: {first_line(exc)}"
    return None


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (libraries often add pages of context)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
