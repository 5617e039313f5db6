"""Data sources and scenarios."""
