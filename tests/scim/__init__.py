"""Tests of the SCIM 2.0 edge."""
