"""Helpers several test modules share: not tests, not fixtures (those live in the
conftest files), each module named for what it does."""
