"""Use cases: one method per use case on the ``LedgerMail`` eventsourcing application."""
