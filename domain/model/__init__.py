"""Aggregates and their events: the write model, the only authority for UIDs, MODSEQs and keys' scope."""
