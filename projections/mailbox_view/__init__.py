"""What IMAP and POP3 serve: accounts, mailboxes, messages with flags and MODSEQ."""
