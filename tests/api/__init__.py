"""Suites across apps: the tenant matrix and isolation, query counts, API and parser
fuzzing, hostile input."""
