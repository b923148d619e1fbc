"""Tests of accounts: ministries, agents, grants, tokens, CSV imports, ProConnect login."""
