"""DKIM for outbound mail: a domain's two keys, the DNS records to publish, and signing.

No I/O and no key store access: keys come in and go out as bytes; ``dkim_keys`` seals
them in the key store (DESIGN §3) and ``ledgermail domain dns`` prints the records.

**Keys.** Every domain has an Ed25519 key (RFC 8463) and an RSA-2048 key (RFC 8301 §3.2:
signers MUST use at least 1024 bits and SHOULD use 2048). A receiver that does not know
Ed25519 ignores that signature and checks the RSA one (RFC 6376 §6.1.1 treats an unknown
``a=`` as a failure of that signature only, and §6.1 lets any one valid signature count),
so signing with both costs nothing and is what RFC 8463 §6 suggests for the transition;
the two signatures need two selectors, since one selector names one key record.

**Selectors** are ``ed<YYYYMMDD>`` and ``rsa<YYYYMMDD>``, the UTC creation date, e.g.
``ed20260314`` and ``rsa20260314``. A rotation publishes the new pair beside the old one,
so the names must differ: when a name is already taken (``taken=``), a letter is added,
``ed20260314b``, ``ed20260314c``, ... The date tells an operator at a glance how old a
published key is.

**Private keys** are held in the forms dkimpy signs with: the RSA key as PKCS#8 PEM, the
Ed25519 key as the base64 of its 32-octet seed (the RFC 8032 §5.1.5 private key; dkimpy
hands it to ``nacl.signing.SigningKey(..., encoder=Base64Encoder)``).

**Signing** puts two DKIM-Signature fields on top of the message: RSA first (topmost),
then Ed25519. Both are computed over the message as given, so neither covers the other
and the order changes no result for a verifier that checks every signature (RFC 6376
§6.1); but some simple verifiers check only the first field, and every verifier knows
rsa-sha256 while not all know ed25519-sha256 yet.

dkimpy needs PyNaCl for Ed25519, signing and verifying (the ``dkimpy[ed25519]`` extra).
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

KeyAlgorithm = Literal["ed25519", "rsa"]

#: RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits, SHOULD use 2048.
RSA_KEY_BITS = 2048
RSA_MIN_BITS = 1024
#: The public exponent everyone uses (and cryptography recommends).
RSA_PUBLIC_EXPONENT = 65537

#: Header fields signed by default, in the order RFC 6376 §5.4.1 lists its suggestions
#: (less those this server never writes), plus RFC 8058 §3.1's List-Unsubscribe-Post,
#: which MUST be signed together with List-Unsubscribe for one-click unsubscription.
#: Each instance present is signed; From is signed once more (see ``sign``).
SIGNED_HEADERS: tuple[bytes, ...] = (
    b"From",
    b"Reply-To",
    b"Subject",
    b"Date",
    b"To",
    b"Cc",
    b"Message-ID",
    b"In-Reply-To",
    b"References",
    b"MIME-Version",
    b"Content-Type",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)

#: RFC 6376 §5.4.1: fields that SHOULD NOT be signed because transit changes them
#: (Received, Return-Path), that must not be seen (Bcc), or that are signatures.
#: dkimpy refuses these; we say so first, with a ValueError.
NOT_SIGNABLE = frozenset(name.lower() for name in dkim.DKIM.SHOULD_NOT)

#: RFC 6376 §3.4.2 and §3.4.4: relaxed/relaxed survives the re-folding and whitespace
#: changes MTAs make; simple body canonicalization breaks on trailing whitespace.
CANONICALIZATION = (b"relaxed", b"relaxed")

# RFC 6376 §3.1: selector = sub-domain *( "." sub-domain ), sub-domain per RFC 5321.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# A public mail domain: two or more LDH labels (RFC 5321 §2.3.5), A-labels for IDNs.
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
# RFC 8461 §3.1: sts-id = 1*32( ALPHA / DIGIT ).
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_REPORT_ADDRESS = re.compile(r"[^\s@,;!]+@[^\s@,;!]+")
# RFC 1035 §3.3.14: a TXT record is one or more <character-string>s of at most 255 octets.
TXT_STRING_MAX = 255


class DkimSigningError(ValueError):
    """The message or a key cannot be used for DKIM signing; the text says why."""


# --- keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DkimKey:
    """One signing key: its selector, the private key as dkimpy takes it, the ``p=`` value.

    ``private_key`` is PKCS#8 PEM for RSA and base64(32-octet seed) for Ed25519.
    ``public_key`` is the base64 DNS value: for RSA the DER SubjectPublicKeyInfo (what
    ``openssl rsa -pubout`` gives, RFC 6376 Appendix C), for Ed25519 the raw 32-octet
    public key with no ASN.1 wrapping (RFC 8463 §4.2).
    """

    algorithm: KeyAlgorithm
    selector: str
    private_key: bytes = field(repr=False)
    public_key: str

    def __post_init__(self) -> None:
        if self.algorithm not in ("ed25519", "rsa"):
            raise DkimSigningError(f"unknown DKIM key algorithm {self.algorithm!r}")
        if not _SELECTOR.fullmatch(self.selector):
            raise DkimSigningError(f"bad DKIM selector {self.selector!r} (RFC 6376 §3.1)")

    @property
    def signature_algorithm(self) -> bytes:
        """The ``a=`` tag: RFC 8463 §3 ed25519-sha256, or rsa-sha256 (RFC 8301 §3.1:
        rsa-sha1 MUST NOT be used for signing)."""
        return b"ed25519-sha256" if self.algorithm == "ed25519" else b"rsa-sha256"

    def txt_value(self) -> str:
        """The key record (RFC 6376 §3.6.1; k=ed25519 per RFC 8463 §4.2)."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public_key}"

    @classmethod
    def from_private_key(cls, algorithm: KeyAlgorithm, selector: str, private_key: bytes) -> DkimKey:
        """Rebuild a key from what the key store keeps (selector and private key bytes);
        the public value is derived, so it can never disagree with the private key."""
        if algorithm == "ed25519":
            try:
                seed = base64.b64decode(private_key, validate=True)
            except ValueError as error:
                raise DkimSigningError("Ed25519 private key is not base64") from error
            if len(seed) != 32:
                raise DkimSigningError(f"Ed25519 private key seed is {len(seed)} octets, not 32")
            public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
            return cls("ed25519", selector, private_key, _raw_public_b64(public))
        if algorithm == "rsa":
            try:
                key = serialization.load_pem_private_key(private_key, password=None)
            except (ValueError, TypeError) as error:
                raise DkimSigningError("RSA private key is not an unencrypted PEM key") from error
            if not isinstance(key, rsa.RSAPrivateKey):
                raise DkimSigningError("the RSA private key is not an RSA key")
            if key.key_size < RSA_MIN_BITS:
                raise DkimSigningError(
                    f"RSA key of {key.key_size} bits: DKIM signers MUST use at least "
                    f"{RSA_MIN_BITS} (RFC 8301 §3.2)"
                )
            return cls("rsa", selector, private_key, _spki_b64(key.public_key()))
        raise DkimSigningError(f"unknown DKIM key algorithm {algorithm!r}")


@dataclass(frozen=True)
class DomainKeys:
    """A domain's signing pair: both are used for every message (see the module doc)."""

    ed25519: DkimKey
    rsa: DkimKey

    def __post_init__(self) -> None:
        if self.ed25519.algorithm != "ed25519" or self.rsa.algorithm != "rsa":
            raise DkimSigningError("DomainKeys takes an Ed25519 key and an RSA key, in that order")
        # RFC 8463 §6: one selector names one key record, so the two must differ.
        if self.ed25519.selector == self.rsa.selector:
            raise DkimSigningError("the Ed25519 and RSA keys need different selectors")

    @property
    def selectors(self) -> tuple[str, str]:
        return self.ed25519.selector, self.rsa.selector


def selectors_for(day: datetime.date, taken: Collection[str] = ()) -> tuple[str, str]:
    """``("ed<YYYYMMDD>", "rsa<YYYYMMDD>")``, with the first letter from b on that makes
    neither name one of ``taken`` (selectors already published for the domain)."""
    stamp = f"{day:%Y%m%d}"
    used = {name.lower() for name in taken}
    for suffix in ["", *"bcdefghijklmnopqrstuvwxyz"]:
        pair = (f"ed{stamp}{suffix}", f"rsa{stamp}{suffix}")
        if not used.intersection(pair):
            return pair
    raise DkimSigningError(f"every selector for {day:%Y-%m-%d} is taken")


def generate_keys(*, today: datetime.date | None = None, taken: Collection[str] = ()) -> DomainKeys:
    """A new Ed25519 key and RSA-2048 key, with selectors from today's UTC date."""
    day = today or datetime.datetime.now(datetime.UTC).date()
    ed_selector, rsa_selector = selectors_for(day, taken)

    ed_key = ed25519.Ed25519PrivateKey.generate()
    seed = ed_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    rsa_key = rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=RSA_KEY_BITS)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return DomainKeys(
        ed25519=DkimKey("ed25519", ed_selector, base64.b64encode(seed), _raw_public_b64(ed_key.public_key())),
        rsa=DkimKey("rsa", rsa_selector, pem, _spki_b64(rsa_key.public_key())),
    )


def _raw_public_b64(key: ed25519.Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def _spki_b64(key: rsa.RSAPublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


# --- DNS records ------------------------------------------------------------------------


@dataclass(frozen=True)
class DnsRecord:
    """One record to publish. ``name`` is the owner name without the final dot; ``value``
    is what one types into a DNS provider's form: TXT text unquoted and unsplit, other
    types in master-file presentation form (``10 mx.example.com.``). ``note`` says what
    else the record needs, for people; it is not part of the record."""

    name: str
    type: str
    value: str
    note: str = ""

    def zone_line(self, ttl: int | None = None) -> str:
        """The record as one line of a master file (RFC 1035 §5.1)."""
        rdata = _txt_rdata(self.value) if self.type == "TXT" else self.value
        ttl_field = f" {ttl}" if ttl is not None else ""
        return f"{self.name}.{ttl_field} IN {self.type} {rdata}"


def _txt_rdata(text: str) -> str:
    """RFC 1035 §3.3.14: TXT data is a sequence of <character-string>s of at most 255
    octets each; a long value is split and the reader joins the strings again with
    nothing between them (RFC 6376 §3.6.2.2, RFC 7208 §3.3). Splitting
    counts octets of the value itself, before master-file escaping (§5.1: ``\\"`` and
    ``\\\\``), which only the presentation form has."""
    try:
        octets = text.encode("ascii")
    except UnicodeEncodeError as error:
        raise DkimSigningError("TXT values here are ASCII") from error
    chunks = [octets[i:i + TXT_STRING_MAX] for i in range(0, len(octets), TXT_STRING_MAX)] or [b""]
    return " ".join(
        '"' + chunk.decode("ascii").replace("\\", "\\\\").replace('"', '\\"') + '"' for chunk in chunks
    )


def normalise_domain(domain: str) -> str:
    """Lower case, no final dot, and an LDH name of two or more labels (RFC 5321 §2.3.5);
    a name in Unicode must be given as its A-label (``xn--...``)."""
    name = domain.strip().rstrip(".").lower()
    if len(name) > 253 or not _DOMAIN.fullmatch(name):
        raise DkimSigningError(f"not a mail domain name: {domain!r}")
    return name


#: RFC 7489 §6.3. p=quarantine: every message this server sends for the domain carries
#: an aligned DKIM signature (d= is the domain) and leaves from the MX host that SPF
#: names, so a failure is a forgery; quarantine rather than reject because mail that a
#: mailing list or forwarder changes fails too, and lands in spam instead of vanishing
#: (move to p=reject when reports show only forgeries fail). Alignment stays relaxed,
#: the default, so a subdomain the operator signs for still counts. No rua= unless an
#: address is given: aggregate reports need a mailbox that reads them, and they hold
#: other parties' addresses, a processing the operator should choose.
DMARC_POLICY = "v=DMARC1; p=quarantine"

#: RFC 8461 §3.2 and §5: testing mode, because until the MX has a certificate from a public CA
#: (the embedded default is self-signed, DESIGN §6) an enforce policy would make senders
#: that honour MTA-STS refuse to deliver. One day's max_age while testing (§3.2).
MTA_STS_MODE = "testing"
MTA_STS_MAX_AGE = 86400


def mta_sts_policy(mx_host: str, *, mode: str = MTA_STS_MODE, max_age: int = MTA_STS_MAX_AGE) -> str:
    """The policy file to serve at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``
    (RFC 8461 §3.2; lines end in LF, which §3.2's sts-policy-term allows)."""
    if mode not in ("enforce", "testing", "none"):
        raise DkimSigningError(f"MTA-STS mode is enforce, testing or none, not {mode!r}")
    if not 0 <= max_age <= 31557600:
        raise DkimSigningError("MTA-STS max_age is 0 to 31557600 seconds (RFC 8461 §3.2)")
    return f"version: STSv1\nmode: {mode}\nmx: {normalise_domain(mx_host)}\nmax_age: {max_age}\n"


def dns_records(
    domain: str,
    keys: DomainKeys,
    *,
    mx_host: str,
    mta_sts_id: str | None,
    dmarc_rua: str | None = None,
) -> list[DnsRecord]:
    """What an operator publishes for ``domain``: MX, SPF, both DKIM keys, DMARC and,
    when ``mta_sts_id`` is given, the MTA-STS record (its policy is ``mta_sts_policy``).
    ``dmarc_rua`` is an address for DMARC aggregate reports (``mailto:`` is added)."""
    name = normalise_domain(domain)
    mx = normalise_domain(mx_host)
    dmarc = DMARC_POLICY
    if dmarc_rua is not None:
        # RFC 7489 §6.4: rua is a comma-separated list of URIs, so the address must not
        # carry ",", ";", "!" (a size limit) or white space of its own.
        if not _REPORT_ADDRESS.fullmatch(dmarc_rua):
            raise DkimSigningError(f"not a DMARC report address: {dmarc_rua!r}")
        dmarc += f"; rua=mailto:{dmarc_rua}"
    records = [
        # RFC 5321 §5.1: the host that receives mail for the domain. One MX, preference 10.
        DnsRecord(name, "MX", f"10 {mx}."),
        # RFC 7208 §5.4 "mx" and §5.1 "-all": mail for the domain leaves only from the
        # MX host's addresses (where ledgermail runs); anything else fails SPF.
        DnsRecord(name, "TXT", "v=spf1 mx -all", note="outbound mail must leave from the MX host's address"),
        # RFC 6376 §3.6.2.1: key records live at <selector>._domainkey.<domain>.
        DnsRecord(f"{keys.ed25519.selector}._domainkey.{name}", "TXT", keys.ed25519.txt_value()),
        DnsRecord(f"{keys.rsa.selector}._domainkey.{name}", "TXT", keys.rsa.txt_value()),
        # RFC 7489 §6.1: the policy record lives at _dmarc.<domain>.
        DnsRecord(f"_dmarc.{name}", "TXT", dmarc),
    ]
    if mta_sts_id is not None:
        if not _STS_ID.fullmatch(mta_sts_id):
            raise DkimSigningError("the MTA-STS id is 1 to 32 letters and digits (RFC 8461 §3.1)")
        # RFC 8461 §3.1: the id changes whenever the policy file changes.
        records.append(
            DnsRecord(
                f"_mta-sts.{name}",
                "TXT",
                f"v=STSv1; id={mta_sts_id}",
                note=(
                    f"serve the policy at https://mta-sts.{name}/.well-known/mta-sts.txt over HTTPS "
                    f"with a certificate valid for mta-sts.{name} (RFC 8461 §3.3); "
                    "change the id whenever the policy changes"
                ),
            )
        )
    return records


# --- signing ----------------------------------------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")


def to_crlf(message: bytes) -> bytes:
    """RFC 6376 §5.3: sign what goes on the wire. Every line end, CRLF, bare LF or bare
    CR, becomes CRLF (RFC 5322 §2.3 allows no other), as the SMTP client will send it."""
    return _LINE_END.sub(b"\r\n", message)


def header_names(message: bytes) -> list[bytes]:
    """The header field names of ``message``, in order, as dkimpy parses them."""
    try:
        headers, _body = dkim.rfc822_parse(message)
    except dkim.MessageFormatError as error:
        raise DkimSigningError(f"the message header cannot be parsed: {error}") from error
    return [name for name, _value in headers]


def include_headers(message: bytes, headers: Iterable[bytes] | None = None) -> list[bytes]:
    """The ``h=`` list for ``message``: each present instance of a field named in
    ``headers`` (default ``SIGNED_HEADERS``; From always), in message order, then From
    once more.

    RFC 6376 §5.4.2: each name in h= covers one instance, counted from the bottom; a name
    listed once more than it occurs covers an absent instance, so one added later breaks
    the signature. §8.15: a second From added above a signed one is what a forger would
    try (a reader shows the top one), hence the extra From.
    """
    wanted = {name.lower() for name in (SIGNED_HEADERS if headers is None else headers)}
    refused = sorted(wanted & NOT_SIGNABLE)
    if refused:
        raise DkimSigningError(f"header fields that must not be signed: {b', '.join(refused).decode()}")
    wanted.add(b"from")  # RFC 6376 §5.4: From MUST be signed.
    present = [name.lower() for name in header_names(message)]
    # RFC 5322 §3.6: exactly one From. With none DKIM cannot sign; with two, which one a
    # reader trusts is the forgery §8.15 is about.
    if present.count(b"from") != 1:
        raise DkimSigningError(f"the message has {present.count(b'from')} From fields, not exactly one")
    return [name for name in present if name in wanted] + [b"from"]


def sign(message: bytes, domain: str, keys: DomainKeys, *, headers: list[bytes] | None = None) -> bytes:
    """``message`` (line ends made CRLF) with two DKIM-Signature fields on top: RSA first,
    then Ed25519, both with ``d=domain``, relaxed/relaxed, and ``h=`` from
    ``include_headers``. ``headers`` names the fields to sign instead of the default
    ``SIGNED_HEADERS``."""
    wire = to_crlf(message)
    name = normalise_domain(domain).encode("ascii")
    signed = include_headers(wire, headers)
    # Each signature is computed over the message without the other, then both are
    # prepended: neither covers the other, and h= never names DKIM-Signature.
    ed_field = _signature_field(wire, name, keys.ed25519, signed)
    rsa_field = _signature_field(wire, name, keys.rsa, signed)
    return rsa_field + ed_field + wire


# --- RSA through OpenSSL ------------------------------------------------------------------

_DKIMPY_RSA_SIGN = dkim.RSASSA_PKCS1_v1_5_sign
_OPENSSL_KEYS: dict[int, rsa.RSAPrivateKey] = {}


def _rsa_sign_with_openssl(hash_object: Any, private_key: dict[str, int]) -> bytes:
    """dkimpy computes RSA signatures in pure Python (about 5 ms each, holding the GIL:
    most of what the queue worker spends per message). RSASSA-PKCS1-v1_5 is
    deterministic (RFC 8017 §8.2), so OpenSSL, through cryptography, gives the very same
    bytes from the same key in a fraction of that. dkimpy still canonicalizes and hashes;
    only this last step changes. Anything but SHA-256 goes to dkimpy's own code."""
    if hash_object.name.lower() != "sha256":
        return _DKIMPY_RSA_SIGN(hash_object, private_key)
    key = _OPENSSL_KEYS.get(private_key["modulus"])
    if key is None:
        public = rsa.RSAPublicNumbers(private_key["publicExponent"], private_key["modulus"])
        key = rsa.RSAPrivateNumbers(
            p=private_key["prime1"], q=private_key["prime2"], d=private_key["privateExponent"],
            dmp1=private_key["exponent1"], dmq1=private_key["exponent2"],
            iqmp=private_key["coefficient"], public_numbers=public).private_key()
        if len(_OPENSSL_KEYS) > 1000:
            _OPENSSL_KEYS.clear()
        _OPENSSL_KEYS[private_key["modulus"]] = key
    return key.sign(hash_object.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))


dkim.RSASSA_PKCS1_v1_5_sign = _rsa_sign_with_openssl


def _signature_field(wire: bytes, domain: bytes, key: DkimKey, signed: list[bytes]) -> bytes:
    signer = dkim.DKIM(wire, signature_algorithm=key.signature_algorithm, linesep=b"\r\n")
    try:
        return signer.sign(
            key.selector.encode("ascii"),
            domain,
            key.private_key,
            canonicalize=CANONICALIZATION,
            include_headers=signed,
        )
    except dkim.DKIMException as error:
        raise DkimSigningError(f"{key.algorithm} DKIM signing failed: {error}") from error
