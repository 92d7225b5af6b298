"""The image index: SQLite storage, the in-memory vectors, and background indexing."""
