"""Certified days in the formats of other tools."""
