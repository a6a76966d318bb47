"""Test helpers and fixtures: models (being written)."""
