"""Logging for the command line: ``-v`` / ``-vv`` / ``MEDSLM_LOG_LEVEL``, always through the PHI redaction.

``configure_logging`` installs :func:`medslm.safety.redaction.install_log_redaction` first (every record
created in the process has registered PHI strings and rule-detected PHI replaced), then one stderr
handler on the ``medslm`` logger with a :class:`~medslm.safety.redaction.PhiRedactingFilter` as a second
line. The level: ``-v`` INFO, ``-vv`` DEBUG, else ``MEDSLM_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR,
CRITICAL), else WARNING. ``MEDSLM_LOG_PHI=1`` (debug only) leaves records unredacted.
"""

from __future__ import annotations

import logging
import os
import sys

from medslm.errors import ConfigurationError

_HANDLER_NAME = "medslm-cli"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def level_for(verbose: int = 0, env: str | None = None) -> int:
    """The log level for ``verbose`` (count of ``-v``) and the ``MEDSLM_LOG_LEVEL`` value."""
    if verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return logging.INFO
    value = (env if env is not None else os.environ.get("MEDSLM_LOG_LEVEL", "")).strip().upper()
    if not value:
        return logging.WARNING
    if value not in LEVELS:
        raise ConfigurationError(f"MEDSLM_LOG_LEVEL={value!r} is not one of {', '.join(LEVELS)}")
    return int(getattr(logging, value))


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to whatever ``sys.stderr`` is when a record is emitted."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(verbose: int = 0, *, stream: object = None) -> int:
    """Set medslm's log level and stderr handler, with PHI redaction installed. Returns the level.

    In a process that already has logging set up (a notebook, an application embedding the CLI, pytest)
    only the redaction is installed, and the level only when ``-v`` or ``MEDSLM_LOG_LEVEL`` asks for one.
    """
    from medslm.safety.redaction import PhiRedactingFilter, install_log_redaction

    level = level_for(verbose)
    log_phi = os.environ.get("MEDSLM_LOG_PHI", "") == "1"
    install_log_redaction(log_phi=log_phi)
    logger = logging.getLogger("medslm")
    explicit = verbose > 0 or bool(os.environ.get("MEDSLM_LOG_LEVEL", "").strip())
    if stream is None and logging.getLogger().handlers:
        if explicit:
            logger.setLevel(level)
        return level
    for h in list(logger.handlers):
        if h.get_name() == _HANDLER_NAME:
            logger.removeHandler(h)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _Stderr()  # type: ignore[arg-type]
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if not log_phi:
        handler.addFilter(PhiRedactingFilter())
    logger.addHandler(handler)
    logger.setLevel(level)
    # a handler that fails must not print the exception being handled (its message may quote a note)
    logging.raiseExceptions = False
    return level


__all__ = ["LEVELS", "configure_logging", "level_for"]
