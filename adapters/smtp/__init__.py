"""SMTP in: the MX and submission listeners (aiosmtpd underneath)."""
