"""Tenants and people: ministries, agents, role grants and API tokens."""
