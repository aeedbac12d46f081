"""Benchmarks for Plenary (``make bench``) and the scoring they share with the tests."""
