"""For the whole suite: the text of every test report and warning is kept for the final scan
for secrets (tests/secret_scan.py, tests/e2e/conftest.py)."""

from __future__ import annotations

from tests import secret_scan


def pytest_runtest_logreport(report):
    secret_scan.keep_report(report)


def pytest_collectreport(report):
    secret_scan.keep_report(report)


def pytest_warning_recorded(warning_message, when, nodeid, location):
    secret_scan.keep_warning(str(warning_message.message), nodeid)
