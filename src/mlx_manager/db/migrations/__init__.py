"""Alembic's migrations (versions/) and the helper they share (tables.py)."""
