"""Fault tests: each names, in its docstring, the promise it checks."""
