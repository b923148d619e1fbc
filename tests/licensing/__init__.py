"""Tests of licence pools and seats."""
