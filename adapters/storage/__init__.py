"""SQLite and PostgreSQL: event store plumbing, view implementations, blob stores."""
