"""Shared test setup: harnesses and helpers the tests of several areas use (`tests/` is on sys.path)."""
