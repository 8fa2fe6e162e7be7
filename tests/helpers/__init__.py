"""Helpers shared by the tests (on ``sys.path`` through the tests folder)."""
