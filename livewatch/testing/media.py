"""Test helpers and fixtures: media (being written)."""
