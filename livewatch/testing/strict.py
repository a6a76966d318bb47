"""Servers the tests need, and a run that fails when a test was skipped.

`require(what, install)` is how a fixture says a server it needs is missing: a failure that names
what to install where servers are required (``CI`` is set to a true value, or
``LIVEWATCH_REQUIRE_SERVERS=1``, which ``make test`` sets), a skip saying the same elsewhere.

Loaded as a pytest plugin (``-p livewatch.testing.strict``; livewatch's own tests opt in through
``pyproject.toml``), it also makes such a run fail when any test was skipped, whatever skipped it,
and prints how many were: a suite that goes green while a server is missing cannot pass for one
that ran everything.
"""
from __future__ import annotations

import os

import pytest

_TRUE = {"1", "true", "yes", "on"}


def servers_required() -> bool:
    """True in CI (``CI=true``) and under ``make test`` (``LIVEWATCH_REQUIRE_SERVERS=1``)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE
               for name in ("CI", "LIVEWATCH_REQUIRE_SERVERS"))


def require(missing: str | None, install: str) -> None:
    """Fail (servers required) or skip (elsewhere) the calling test when `missing` says why a
    server cannot run; `install` says what to install. Does nothing when `missing` is None."""
    if missing is None:
        return
    message = f"{missing}; install it: {install}"
    if servers_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class SkipCounter:
    """Records every skipped test (and module) of a run; fails the run where servers are required."""

    def __init__(self) -> None:
        self.skipped: list[str] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:  # a whole module skipped at import (importorskip, module-level skip)
            self.skipped.append(report.nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped.append(report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.skipped and servers_required() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if servers_required():
            terminalreporter.write_line(
                f"livewatch: {len(self.skipped)} skipped (CI and make test allow none)",
                red=bool(self.skipped), green=not self.skipped)
            for nodeid in self.skipped:
                terminalreporter.write_line(f"  skipped: {nodeid}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipCounter(), "livewatch-skip-counter")
