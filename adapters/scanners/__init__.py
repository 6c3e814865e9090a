"""Content scanners behind the ``Scanner`` port (spam, virus, sender authentication)."""
