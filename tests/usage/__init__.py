"""Tests of usage: the roll-up, exports, reports, retention, personal data."""
