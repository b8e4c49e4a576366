"""Shared fixtures: the local test site, Chromium and started fetchers (tests/fixtures_site.py)."""

pytest_plugins = ["tests.fixtures_site"]
