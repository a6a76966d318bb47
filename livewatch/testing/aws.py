"""Test helpers and fixtures: aws (being written)."""
