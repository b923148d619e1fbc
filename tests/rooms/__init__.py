"""Tests of rooms: the rooms API, joining, and the LiveKit webhooks."""
