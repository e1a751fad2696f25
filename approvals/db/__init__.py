"""Persistence: engine, tables, column types, repositories and migrations (SQLAlchemy 2 async)."""
