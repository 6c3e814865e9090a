"""The scorer's rule names and default points, apart from the scorer so the settings
can check ``antiabuse.rule_weights`` without importing any DNS or protocol code."""

from __future__ import annotations

#: The Generic Test for Unsolicited Bulk Email (SpamAssassin): any filter must call a
#: message holding it spam, so operators can test the whole path.
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

#: Rule name -> points. Positive is spammy, negative is trustworthy.
DEFAULT_WEIGHTS: dict[str, float] = {
    "gtube": 1000.0,
    "spf_fail": 3.5,
    "spf_softfail": 1.5,
    "spf_permerror": 0.5,
    "dkim_fail": 2.0,
    "dmarc_fail": 3.0,
    "dmarc_pass": -1.0,
    "dnsbl": 4.0,
    "dnswl": -3.0,
    "missing_date": 1.0,
    "missing_message_id": 1.0,
    "from_return_path_mismatch": 0.5,
    "all_caps_subject": 1.5,
    "excessive_exclamation": 1.0,
}
