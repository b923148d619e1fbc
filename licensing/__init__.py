"""Licence pools, seats, rollout goals and savings."""
