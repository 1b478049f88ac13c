"""Helpers shared by the subprocess tests (tests/e2e, tests/drills)."""
