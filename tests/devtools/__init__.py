"""Tests of the dev tools: the LiveKit simulator, the dev identity provider, the
embedded PostgreSQL."""
