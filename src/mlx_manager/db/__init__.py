"""The SQLite database: SQLModel tables, Alembic migrations applied at start, WAL mode."""
