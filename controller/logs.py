"""Structured logging for the controller (structlog).

Call :func:`configure_logging` once at start-up. Modules log through
``structlog.get_logger(__name__)`` with an event name and key/value context::

    log = structlog.get_logger(__name__)
    with bound_context(namespace="default", autoscaler="llama"):
        log.info("scaled", before=2, after=3)

In ``json`` format every line is one JSON object with ``timestamp`` (ISO 8601,
UTC), ``level``, ``event``, ``logger`` and the bound context; records of
standard-library loggers (uvicorn, kubernetes, urllib3) are rendered the same
way. ``console`` is the human-readable form for a terminal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["json", "console"]
_HANDLER_NAME = "kis-structlog"


def _level(level: int | str) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning, error or critical")
    return value


def configure_logging(format: LogFormat = "json", level: int | str = "info", stream: TextIO | None = None) -> None:  # noqa: A002
    """Route structlog and standard-library logging to ``stream`` (stderr) as ``format``.

    Idempotent: calling it again replaces the handler it installed.
    """
    if format not in ("json", "console"):
        raise ValueError(f"unknown log format {format!r}; use 'json' or 'console'")
    numeric = _level(level)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: list[Any]
    if format == "json":
        renderer = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=stream is None and sys.stderr.isatty())]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)


@contextmanager
def bound_context(**context: Any) -> Iterator[None]:
    """Add ``context`` (e.g. ``namespace``, ``autoscaler``) to every log line inside the block."""
    with structlog.contextvars.bound_contextvars(**context):
        yield
