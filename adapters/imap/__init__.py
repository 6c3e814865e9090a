"""IMAP (RFC 9051, RFC 3501): the sans-I/O framer, tokenizer, writers and session, and the asyncio server."""
