"""Shared fixtures: every test runs offline, on the CPU, in the smoke profile."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _course_env(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COURSE_OFFLINE", "1")
