"""Encryption at rest: master key, subject key store, event sealing, body sealing."""
