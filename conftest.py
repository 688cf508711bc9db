"""Repo-root pytest wiring: the zoocompat pytest plugin serves conformance/ and tests/."""

pytest_plugins = ["zoocompat.pytest_plugin"]
