"""IMAP (issue #4): so far only the pieces with no design choice left in them."""
