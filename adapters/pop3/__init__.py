"""POP3 (RFC 1939): sans-I/O line reader and session, and the asyncio server."""
