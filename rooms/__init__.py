"""Rooms, joining and allocation of live meetings (issue: media nodes and rooms)."""
