"""Tests of media nodes: placement, queued placement requests, health, secret keys."""
