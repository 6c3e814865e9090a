"""The record of processing (GDPR Art. 30): one hash-chained row per event, no plaintext PII."""
