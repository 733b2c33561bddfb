"""Reads metrics snapshots from Prometheus, batched over scale targets.

One :meth:`PrometheusReader.read` returns a snapshot per target: every name
of :data:`controller.signals.SIGNAL_NAMES`, plus the on-demand signals the
target wants or overrides (:data:`controller.signals.ON_DEMAND_SIGNALS`),
``math.nan`` where the value is absent or not finite (a count with no series
is 0: :attr:`controller.signals.Signal.absent`). Queries are batched: for each signal, one instant query
covers all targets that share the same matcher label keys (and windows),
aggregated ``by (<those keys>)`` and filtered with ``=~`` alternations of
their values; results are mapped back to targets by their label values. So
1,000 targets with the default selector cost one query per signal.

Failure modes:

* Prometheus unreachable, timing out, answering 401/403/5xx or garbage:
  :class:`MetricsUnavailable` (the whole snapshot is unknown).
* One query rejected (400 bad_data, 422 execution error) or an override that
  returns several series: that signal is NaN for the targets it covered, the
  error is logged and listed in :attr:`ReadReport.errors`.

Overrides (``spec.metrics.overrides``) are PromQL strings in which the
literal placeholders ``{sel}`` (the target's matchers, without braces),
``{window}``, ``{long_window}``, ``{stable_window}`` and ``{panic_window}``
(durations such as ``60s``) are replaced;
nothing else is interpreted, so ``sum(my_metric{{sel}})`` and a verbatim
``vector(3)`` both work. An override must return one series or a scalar.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
import structlog
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from controller import signals as sig

log = structlog.get_logger(__name__)
T = TypeVar("T")

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = frozenset({"le", "__name__"})
_STATUS = re.compile(r"HTTP Status Code (\d{3})")
_BODY = re.compile(r"HTTP Status Code \d{3} \((b'.*'|b\".*\")\)\s*$", re.DOTALL)
#: HTTP statuses that mean "this query is bad", not "Prometheus is down".
QUERY_ERROR_STATUSES = frozenset({400, 422})


class MetricsUnavailable(RuntimeError):
    """Prometheus could not be read at all; ``url`` and ``cause`` say where and why."""

    def __init__(self, url: str, cause: str | BaseException) -> None:
        self.url = url
        self.cause = cause
        super().__init__(f"Prometheus at {url} is unavailable: {cause}")


@dataclass(frozen=True)
class TargetQuery:
    """One scale target to read.

    :param key: the caller's identifier, e.g. ``"<namespace>/<autoscaler>"``.
    :param matchers: label -> value equality matchers that select its series
        (``spec.metrics.selector``); must not be empty.
    :param overrides: signal name -> PromQL replacing that signal's query.
    :param window_s: rate window; ``None`` uses the reader's.
    :param long_window_s: long rate window; ``None`` uses the reader's.
    :param wants: on-demand signals to read (see :func:`controller.signals.wanted_signals`).
    :param windows: named windows of the on-demand signals (``stable_window``, ``panic_window``; s).
    """

    key: str
    matchers: Mapping[str, str]
    overrides: Mapping[str, str] = field(default_factory=dict)
    window_s: float | None = None
    long_window_s: float | None = None
    wants: tuple[str, ...] = ()
    windows: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"target {self.key!r}"
        if not self.matchers:
            raise ValueError(f"{where}: matchers must not be empty (it would aggregate every series)")
        for name, value in self.matchers.items():
            if not isinstance(name, str) or not _LABEL_NAME.match(name):
                raise ValueError(f"{where}: {name!r} is not a valid Prometheus label name")
            if name in _RESERVED_LABELS:
                raise ValueError(f"{where}: label {name!r} is reserved and cannot be a matcher")
            if not isinstance(value, str):
                raise ValueError(f"{where}: matcher {name}={value!r} must be a string")
        unknown = sorted(set(self.overrides) - set(sig.ALL_SIGNAL_NAMES))
        if unknown:
            raise ValueError(f"{where}: unknown override signal(s) {unknown}; known: {list(sig.ALL_SIGNAL_NAMES)}")
        unknown = sorted(set(self.wants) - sig.ON_DEMAND_NAMES)
        if unknown:
            raise ValueError(f"{where}: {unknown} are not on-demand signals; known: {sorted(sig.ON_DEMAND_NAMES)}")
        for name, promql in self.overrides.items():
            if not isinstance(promql, str) or not promql.strip():
                raise ValueError(f"{where}: override for {name!r} must be a non-empty PromQL string")
        for attr in ("window_s", "long_window_s"):
            value = getattr(self, attr)
            if value is not None and not (math.isfinite(value) and value >= 1):
                raise ValueError(f"{where}: {attr} must be >= 1 second, got {value!r}")
        object.__setattr__(self, "matchers", dict(self.matchers))
        object.__setattr__(self, "overrides", dict(self.overrides))
        object.__setattr__(self, "windows", {**sig.DEFAULT_WINDOWS, **dict(self.windows)})

    def reads(self, signal: sig.Signal) -> bool:
        """Whether this target reads ``signal``: a default one, or an on-demand one it wants or overrides."""
        if signal.name not in sig.ON_DEMAND_NAMES:
            return True
        return signal.name in self.overrides or (signal.name in self.wants and bool(signal.promql))


@dataclass(frozen=True)
class QueryError:
    """A query Prometheus rejected; its signal is NaN for ``targets``."""

    signal: str
    query: str
    targets: tuple[str, ...]
    status: int | None
    message: str


@dataclass(frozen=True)
class PlannedQuery:
    """One instant query and how its result series map back to targets.

    ``by`` empty: the query returns one series (or a scalar) for ``members[()]``.
    Otherwise each result series' values of the ``by`` labels index ``members``.
    """

    signal: str
    promql: str
    by: tuple[str, ...]
    members: Mapping[tuple[str, ...], tuple[str, ...]]
    absent: float = math.nan

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(k for keys in self.members.values() for k in keys)


@dataclass(frozen=True)
class ReadReport:
    """What one read returned: snapshots per target key, queries sent, errors."""

    snapshots: dict[str, dict[str, float]]
    queries: int
    errors: tuple[QueryError, ...]


def promql_string(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


_RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def regex_quote(value: str) -> str:
    """Escape RE2 metacharacters so ``value`` matches literally (Go's ``regexp.QuoteMeta``)."""
    return _RE2_META.sub(r"\\\1", value)


def exact_selector(matchers: Mapping[str, str]) -> str:
    """``k1="v1",k2="v2"`` (sorted by label name, no braces)."""
    return ",".join(f"{k}={promql_string(matchers[k])}" for k in sorted(matchers))


def alternation_selector(values: Mapping[str, Sequence[str]]) -> str:
    """Matchers for any of several values per label: ``=`` for one, ``=~"a|b"`` for more."""
    parts = []
    for k in sorted(values):
        vs = sorted(set(values[k]))
        if len(vs) == 1:
            parts.append(f"{k}={promql_string(vs[0])}")
        else:
            parts.append(f"{k}=~{promql_string('|'.join(regex_quote(v) for v in vs))}")
    return ",".join(parts)


def renamed(matchers: Mapping[str, T], rename: Sequence[tuple[str, str]]) -> dict[str, T]:
    """``matchers`` with the label names of ``rename`` (old, new) replaced (see :attr:`controller.signals.Signal.rename`)."""
    names = dict(rename)
    return {names.get(k, k): v for k, v in matchers.items()}


def render_override(template: str, selector: str, window_s: float, long_window_s: float,
                    windows: Mapping[str, float] | None = None) -> str:
    """Substitute the literal placeholders of an override (see the module docstring)."""
    out = template.replace("{sel}", selector)
    for name, seconds in {**sig.DEFAULT_WINDOWS, **dict(windows or {})}.items():
        out = out.replace("{" + name + "}", sig.prometheus_duration(seconds))
    return out.replace("{long_window}", sig.prometheus_duration(long_window_s)).replace("{window}", sig.prometheus_duration(window_s))


def plan_queries(
    targets: Sequence[TargetQuery],
    window_s: float,
    long_window_s: float,
    signals: Sequence[sig.Signal] = sig.ALL_SIGNALS,
) -> list[PlannedQuery]:
    """The queries that read ``signals`` for ``targets`` (pure; no I/O).

    One query per signal and group of targets sharing matcher keys and windows;
    one per target for its overridden signals (and for signals without a
    batched form).
    """
    keys = [t.key for t in targets]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"duplicate target keys: {duplicates}")
    plans: list[PlannedQuery] = []
    for signal in signals:
        groups: dict[tuple, dict[tuple[str, ...], list[str]]] = {}
        for t in targets:
            if not t.reads(signal):
                continue
            w = t.window_s if t.window_s is not None else window_s
            lw = t.long_window_s if t.long_window_s is not None else long_window_s
            if signal.name in t.overrides:
                promql = render_override(t.overrides[signal.name], exact_selector(t.matchers), w, lw, t.windows)
                plans.append(PlannedQuery(signal.name, promql, (), {(): (t.key,)}, signal.absent))
            elif not signal.grouped:
                promql = sig.render_promql(signal, exact_selector(renamed(t.matchers, signal.rename)), w, lw, windows=t.windows)
                plans.append(PlannedQuery(signal.name, promql, (), {(): (t.key,)}, signal.absent))
            else:
                by = tuple(sorted(t.matchers))
                members = groups.setdefault((by, w, lw, tuple(sorted(t.windows.items()))), {})
                members.setdefault(tuple(t.matchers[k] for k in by), []).append(t.key)
        for (by, w, lw, windows), members in groups.items():
            values = {k: [label_values[i] for label_values in members] for i, k in enumerate(by)}
            promql = sig.render_promql(signal, alternation_selector(renamed(values, signal.rename)), w, lw, by=by, windows=dict(windows))
            plans.append(PlannedQuery(signal.name, promql, by, {lv: tuple(ks) for lv, ks in members.items()}, signal.absent))
    return plans


def _finite(raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _status_of(exc: PrometheusApiClientException) -> int | None:
    match = _STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def _error_text(exc: PrometheusApiClientException) -> str:
    """Prometheus' own ``error`` message out of the client's exception, if it has one."""
    text = str(exc)
    match = _BODY.search(text)
    if match:
        try:
            body = json.loads(ast.literal_eval(match.group(1)))
            return f"{body.get('errorType', 'error')}: {body['error']}"
        except (ValueError, SyntaxError, KeyError, TypeError, AttributeError):
            pass
    return text


class PrometheusReader:
    """Reads snapshots for many scale targets with few PromQL queries.

    :param url: Prometheus base URL, e.g. ``http://prometheus.monitoring:9090``.
    :param bearer_token: sent as ``Authorization: Bearer <token>``.
    :param bearer_token_file: read before every :meth:`read` (rotating
        service-account tokens); takes precedence over ``bearer_token``.
    :param ca_file: CA bundle for TLS verification of ``url``.
    :param verify: ``False`` disables TLS verification (ignored with ``ca_file``).
    :param timeout_s: per-request timeout, seconds.
    :param window_s: default rate window, seconds (per target: ``TargetQuery.window_s``).
    :param long_window_s: default long rate window, seconds.
    :param retries: connection/5xx retries per request (short backoff), so a
        blip does not cost a tick but an outage fails fast.
    :param session: a ``requests.Session`` to send through (proxies, tests).
    :param signals: the signals a target may read (default: :data:`controller.signals.ALL_SIGNALS`).
    """

    def __init__(
        self,
        url: str,
        *,
        bearer_token: str | None = None,
        bearer_token_file: str | Path | None = None,
        ca_file: str | Path | None = None,
        verify: bool = True,
        timeout_s: float = 5.0,
        window_s: float = sig.DEFAULT_WINDOW_S,
        long_window_s: float = sig.DEFAULT_LONG_WINDOW_S,
        retries: int = 1,
        session: requests.Session | None = None,
        signals: Sequence[sig.Signal] = sig.ALL_SIGNALS,
    ) -> None:
        if not url or not url.startswith(("http://", "https://")):
            raise ValueError(f"Prometheus url must start with http:// or https://, got {url!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        for name, value in (("window_s", window_s), ("long_window_s", long_window_s)):
            if not (math.isfinite(value) and value >= 1):
                raise ValueError(f"{name} must be >= 1 second, got {value}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if ca_file is not None and not Path(ca_file).is_file():
            raise ValueError(f"ca_file {str(ca_file)!r} does not exist")
        self.url = url.rstrip("/")
        self.window_s = float(window_s)
        self.long_window_s = float(long_window_s)
        self.signals = tuple(signals)
        self._token = bearer_token
        self._token_file = Path(bearer_token_file) if bearer_token_file is not None else None
        session = session if session is not None else requests.Session()
        session.verify = str(ca_file) if ca_file is not None else bool(verify)
        retry = Retry(
            total=retries,
            backoff_factor=0.2,
            status_forcelist=(502, 503, 504),
            allowed_methods=None,
            respect_retry_after_header=False,
        )
        self._client = PrometheusConnect(
            url=self.url, headers={}, session=session, retry=retry, timeout=timeout_s  # type: ignore[arg-type]
        )

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> PrometheusReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, targets: Sequence[TargetQuery], *, time_s: float | None = None) -> dict[str, dict[str, float]]:
        """One snapshot per target key (see :meth:`read_report`)."""
        return self.read_report(targets, time_s=time_s).snapshots

    def read_report(self, targets: Sequence[TargetQuery], *, time_s: float | None = None) -> ReadReport:
        """Snapshots per target key, with the number of queries sent and the query errors.

        :param time_s: evaluation time (Unix seconds); ``None`` is Prometheus' now.
        :raises MetricsUnavailable: Prometheus could not be read at all.
        """
        plans = plan_queries(targets, self.window_s, self.long_window_s, self.signals)
        snapshots = {t.key: {s.name: math.nan for s in self.signals if t.reads(s)} for t in targets}
        if not plans:
            return ReadReport(snapshots, 0, ())
        self._client.headers = self._auth_headers()
        params = {"time": f"{time_s:.3f}"} if time_s is not None else None
        errors: list[QueryError] = []
        for plan in plans:
            try:
                result = self._query(plan.promql, params)
            except _Rejected as rejected:
                error = QueryError(plan.signal, plan.promql, plan.targets, rejected.status, rejected.message)
                errors.append(error)
                log.error("prometheus_query_failed", signal=plan.signal, query=plan.promql,
                          status=rejected.status, error=rejected.message, targets=len(plan.targets))
                continue
            for key, value, problem in _assign(plan, result):
                snapshots[key][plan.signal] = value
                if problem:
                    errors.append(QueryError(plan.signal, plan.promql, (key,), None, problem))
                    log.error("prometheus_query_ambiguous", signal=plan.signal, query=plan.promql,
                              target=key, error=problem)
        return ReadReport(snapshots, len(plans), tuple(errors))

    def _auth_headers(self) -> dict[str, str]:
        token = self._token
        if self._token_file is not None:
            try:
                token = self._token_file.read_text().strip()
            except OSError as exc:
                raise MetricsUnavailable(self.url, f"cannot read bearer token file {self._token_file}: {exc}") from exc
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _query(self, promql: str, params: dict[str, str] | None) -> Any:
        try:
            return self._client.custom_query(promql, params=params)
        except PrometheusApiClientException as exc:
            status = _status_of(exc)
            if status in QUERY_ERROR_STATUSES:
                raise _Rejected(status, _error_text(exc)) from exc
            raise MetricsUnavailable(self.url, f"HTTP {status}: {_error_text(exc)}") from exc
        except (requests.RequestException, KeyError, TypeError, ValueError) as exc:
            raise MetricsUnavailable(self.url, f"{type(exc).__name__}: {exc}") from exc


class _Rejected(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _assign(plan: PlannedQuery, result: Any) -> list[tuple[str, float, str | None]]:
    """(target key, value, problem) for every target of ``plan``; NaN where absent."""
    out: dict[str, tuple[float, str | None]] = {k: (plan.absent, None) for k in plan.targets}
    if not plan.by:
        (key,) = plan.members[()]
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            out[key] = (_finite(result[1]), None)  # scalar: [time, "value"]
        elif isinstance(result, list) and len(result) == 1:
            out[key] = (_finite(result[0].get("value", (None, None))[1]), None)
        elif isinstance(result, list) and len(result) > 1:
            out[key] = (math.nan, f"query returned {len(result)} series; it must return one")
    else:
        for item in result if isinstance(result, list) else ():
            if not isinstance(item, dict):
                continue
            labels = item.get("metric", {})
            for key in plan.members.get(tuple(labels.get(k, "") for k in plan.by), ()):
                out[key] = (_finite(item.get("value", (None, None))[1]), None)
    return [(k, v, p) for k, (v, p) in out.items()]
