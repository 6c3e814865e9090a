"""Settings: the TOML file, then ``LEDGERMAIL_*`` environment variables (DESIGN §6).

Nested keys are joined by ``__``: ``LEDGERMAIL_LISTEN__IMAP=127.0.0.1:2143``. A listener
set to ``""`` is off.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class ConfigError(Exception):
    """Bad configuration: the message says which setting and why."""


class Listen(BaseModel):
    smtp: str = "127.0.0.1:2525"
    submission: str = "127.0.0.1:2587"
    submissions: str = "127.0.0.1:2465"
    imap: str = "127.0.0.1:2143"
    imaps: str = "127.0.0.1:2993"
    pop3: str = "127.0.0.1:2110"
    pop3s: str = "127.0.0.1:2995"
    http: str = "127.0.0.1:8025"

    @field_validator("*")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value == "":
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT or \"\" (off), got {value!r}")
        return value

    def address(self, name: str) -> tuple[str, int] | None:
        value = getattr(self, name)
        if not value:
            return None
        host, _, port = value.rpartition(":")
        return host.strip("[]"), int(port)


class Store(BaseModel):
    #: ``sqlite:///<dir>`` (default: the data dir) or ``postgresql://user@host:port/db``.
    url: str = ""
    #: PostgreSQL schema prefix: events in <schema>, keys in <schema>_keys, views apart.
    schema_name: str = Field(default="ledgermail", alias="schema")
    pool_size: int = 4

    model_config = {"populate_by_name": True}

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///<dir> or postgresql://user@host:port/db")
        return value

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        if not value.replace("_", "").isalnum() or not value[0].isalpha() or len(value) > 40:
            raise ValueError("schema must be letters, digits and _, starting with a letter")
        return value.lower()


class Crypto(BaseModel):
    #: Default: <data dir>/master.key, created with mode 0600 on first start.
    master_key_file: str = ""
    password_memory_kib: int = 65536
    password_time_cost: int = 3


class Tls(BaseModel):
    #: PEM certificate chain and key. Empty: a self-signed pair made on first start in
    #: <data dir>/tls/ (fine for tests and loopback; set real paths in production).
    cert_file: str = ""
    key_file: str = ""


class Smtp(BaseModel):
    """Limits of the SMTP listeners; each is enforced and tested (DESIGN §5)."""

    #: RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted; more get 452.
    max_recipients: int = Field(default=100, ge=1)
    #: Seconds without a complete command (or, during DATA, without any byte).
    idle_timeout: float = Field(default=300.0, gt=0)
    #: Longest connection, whatever the client does (NOOP loops end here).
    session_timeout: float = Field(default=1800.0, gt=0)
    #: Bytes per second a DATA transfer must average after ``data_rate_grace`` seconds.
    min_data_rate: int = Field(default=500, ge=0)
    data_rate_grace: float = Field(default=30.0, ge=0)
    max_connections_per_ip: int = Field(default=30, ge=1)
    max_connections: int = Field(default=1000, ge=1)
    #: Error replies before 421 and close (Postfix smtpd_hard_error_limit).
    max_errors: int = Field(default=20, ge=1)
    #: After this many errors each further error reply is delayed (smtpd_soft_error_limit).
    soft_errors: int = Field(default=10, ge=1)
    error_delay: float = Field(default=1.0, ge=0)
    #: NOOP, RSET, HELP, VRFY, EXPN per connection (Postfix smtpd_junk_command_limit).
    max_junk_commands: int = Field(default=100, ge=1)
    #: Commands on a submission port before a successful AUTH.
    max_commands_before_auth: int = Field(default=20, ge=1)
    #: Leave the client's IP address out of the Received: header of submitted mail.
    hide_client_ip_on_submission: bool = True
    #: MAIL FROM gets 452 4.3.1 while the data dir has less free space than this.
    min_free_bytes: int = Field(default=64 * 1024 * 1024, ge=0)


class Imap(BaseModel):
    """Limits of the IMAP listeners; each is enforced and tested (DESIGN §5)."""

    #: Seconds a connection may stay silent before LOGIN.
    login_timeout: float = Field(default=60.0, gt=0)
    #: Seconds a connection has to log in at all, however busy it keeps the line.
    login_deadline: float = Field(default=180.0, gt=0)
    #: RFC 9051 §5.4: the autologout timer of an authenticated session is at least
    #: 30 minutes; IDLE counts as activity only until this runs out too.
    idle_timeout: float = Field(default=1800.0, gt=0)
    #: Longest command line (literals apart). Long UID sets from clients like mbsync fit.
    max_line: int = Field(default=65536, ge=1024)
    #: Largest literal before authentication (a LOGIN password fits).
    max_literal_before_login: int = Field(default=8192, ge=256)
    #: BAD answers before the connection is closed with BYE.
    max_bad_commands_before_login: int = Field(default=3, ge=1)
    max_bad_commands: int = Field(default=50, ge=1)
    max_connections_per_ip: int = Field(default=50, ge=1)
    max_connections: int = Field(default=2000, ge=1)
    #: Deepest parenthesized list a command may hold.
    max_nesting: int = Field(default=32, ge=4)


class Pop3(BaseModel):
    """Limits of the POP3 listeners; each is enforced and tested (DESIGN §5)."""

    #: RFC 1939 §3: an autologout timer of at least 10 minutes.
    idle_timeout: float = Field(default=600.0, gt=0)
    #: Seconds a connection has to log in at all.
    login_deadline: float = Field(default=180.0, gt=0)
    #: RFC 2449 §4: commands are at most 255 octets; SASL responses may be longer.
    max_line: int = Field(default=4096, ge=512)
    #: -ERR answers before the connection is closed (fewer before login).
    max_errors_before_login: int = Field(default=3, ge=1)
    max_errors: int = Field(default=20, ge=1)
    max_connections_per_ip: int = Field(default=50, ge=1)
    max_connections: int = Field(default=1000, ge=1)


class Auth(BaseModel):
    """Failed logins: a growing delay, then a temporary lockout per IP and per login."""

    failure_delay: float = Field(default=1.0, ge=0)
    max_failure_delay: float = Field(default=8.0, ge=0)
    ip_lockout_failures: int = Field(default=10, ge=1)
    login_lockout_failures: int = Field(default=20, ge=1)
    #: Failures count within this window; a lockout lasts as long.
    lockout_seconds: float = Field(default=600.0, gt=0)
    #: Failures (and attempts refused while locked out) from one IP within
    #: ``lockout_seconds`` that turn into a ban: an event every process honours.
    ip_ban_failures: int = Field(default=20, ge=1)
    #: How long an IP ban lasts (a login name's ban lasts ``lockout_seconds``).
    ban_seconds: float = Field(default=3600.0, gt=0)
    #: How often servers re-read the bans other processes placed or lifted.
    ban_refresh_seconds: float = Field(default=2.0, gt=0)


class Outbound(BaseModel):
    """The delivery queue (issue 6): retries, routing, TLS policy, DKIM, consent gate."""

    #: Run the queue worker inside ``serve`` (off: mail queues up and waits).
    enabled: bool = True
    #: ``host:port``: send everything through this relay instead of looking up MX.
    smarthost: str = ""
    #: Per-domain next hops, ``{"example.org" = "relay.example:2525"}`` (Postfix's
    #: transport_maps): checked before the smarthost and before DNS.
    routes: dict[str, str] = Field(default_factory=dict)
    #: Retry schedule in seconds (Postfix: minimal/maximal_backoff_time,
    #: maximal_queue_lifetime, delay_warning_time; 0 = no delay warning).
    min_backoff: float = Field(default=300.0, gt=0)
    max_backoff: float = Field(default=4000.0, gt=0)
    max_age: float = Field(default=5 * 86400.0, gt=0)
    delay_warning: float = Field(default=4 * 3600.0, ge=0)
    #: How long a node owns a message it is delivering; a crashed node's messages are
    #: retried by any node once this runs out.
    lease_seconds: float = Field(default=600.0, gt=0)
    #: How often the worker looks for due messages.
    poll_interval: float = Field(default=1.0, gt=0)
    #: Messages leased per batch.
    batch_size: int = Field(default=100, ge=1)
    #: Messages in flight at once, and connections per destination domain (or relay).
    max_concurrency: int = Field(default=50, ge=1)
    per_domain_concurrency: int = Field(default=10, ge=1)
    #: Seconds for each SMTP step (RFC 5321 §4.5.3.2 asks for minutes).
    timeout: float = Field(default=300.0, gt=0)
    #: Enforce MTA-STS policies (RFC 8461).
    mta_sts: bool = True
    #: Recipients one account may submit per sliding hour (0 = no limit): a stolen
    #: password cannot spam the world. Counted per process, in memory.
    max_messages_per_hour: int = Field(default=500, ge=0)
    #: Sign outgoing mail with the sender domain's DKIM keys.
    dkim: bool = True
    #: Where one-click unsubscribe links point (RFC 8058); default: the http listener.
    unsubscribe_url: str = ""

    @field_validator("smarthost")
    @classmethod
    def _smarthost(cls, value: str) -> str:
        if value:
            _check_next_hop(value)
        return value

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: dict[str, str]) -> dict[str, str]:
        for hop in value.values():
            _check_next_hop(hop)
        return {domain.strip().lower().rstrip("."): hop for domain, hop in value.items()}


def _check_next_hop(value: str) -> None:
    """``host:port``, ``[address]:port`` or a bare host; ValueError says what is wrong."""
    from adapters.next_hops import parse_smarthost

    parse_smarthost(value)


class Compliance(BaseModel):
    #: How long backups holding a shredded key live; erasure receipts state the date.
    backup_retention_days: int = 30


class Portal(BaseModel):
    """The privacy portal's sessions (``/portal``, issue 7): server-side, in memory."""

    #: A session unused this long is over (OWASP: 15-30 minutes for personal data).
    session_idle_seconds: float = Field(default=900.0, gt=0)
    #: However busy, a session ends this long after login.
    session_max_seconds: float = Field(default=28800.0, gt=0)


class Retention(BaseModel):
    """The retention scheduler inside ``serve`` (issue 7): applies every account's
    retention policy as events, on the node that leads the projections."""

    #: Run the scheduler inside ``serve`` (off: only ``ledgermail retention run`` and
    #: ``POST /api/v1/retention/run`` apply the policies).
    enabled: bool = True
    #: Seconds between runs; the first run comes right after start.
    interval: float = Field(default=3600.0, gt=0)


def _daemon_address(value: str, *, unix: bool) -> str:
    from adapters.scanners.addresses import parse_address

    parse_address(value, unix=unix)  # raises ValueError with the reason
    return value


class SpamDaemon(BaseModel):
    """An existing spamd or rspamd whose score is added to the built-in scorer's
    (issue 8, ``docs/anti-abuse.md``). Off unless configured."""

    enabled: bool = False
    #: ``host:port``, or (spamd only) the absolute path of a unix socket.
    address: str = "127.0.0.1:783"
    #: Seconds to connect, and for the whole request.
    connect_timeout: float = Field(default=5.0, gt=0)
    timeout: float = Field(default=30.0, gt=0)
    #: Larger messages are not sent (no points), as ``spamc --max-size`` does.
    max_bytes: int = Field(default=2 * 1024 * 1024, ge=1)
    #: When the daemon is down: false, 451 so the sender retries; true, score without it.
    fail_open: bool = False

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _daemon_address(value, unix=True)


class Rspamd(SpamDaemon):
    #: rspamd's normal worker (HTTP), ``host:port``.
    address: str = "127.0.0.1:11333"

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _daemon_address(value, unix=False)


class ClamAv(BaseModel):
    """Virus scanning with an existing clamd (issue 8, ``docs/anti-abuse.md``). Off
    unless configured; on, every MX and submission message is scanned."""

    enabled: bool = False
    #: clamd's ``TCPSocket`` as ``host:port``, or its ``LocalSocket`` path.
    address: str = "127.0.0.1:3310"
    #: Seconds to connect, and for the whole scan.
    connect_timeout: float = Field(default=5.0, gt=0)
    timeout: float = Field(default=60.0, gt=0)
    #: Larger messages are not sent and count as over the scan limits (infected); keep
    #: clamd's StreamMaxLength at least this large.
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    #: A virus (or exceeded scan limits): ``reject`` (554 5.7.0) or ``quarantine``
    #: (the recipient's Junk mailbox, marked X-Virus-Status: Infected).
    infected: Literal["reject", "quarantine"] = "reject"
    #: clamd down or timing out: false, 451 so the sender retries; true, deliver
    #: marked X-Virus-Status: Unscanned.
    fail_open: bool = False

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _daemon_address(value, unix=True)


class Greylisting(BaseModel):
    """Greylisting of MX mail (issue 8, RFC 6647; ``adapters/smtp/greylist.py``), off by
    default: it delays the first mail of every new correspondent. In memory per process."""

    enabled: bool = False
    #: A retry sooner than this after the first try is refused again (RFC 6647 §4).
    delay_seconds: float = Field(default=300.0, ge=0)
    #: A retry later than this after the first try starts over.
    retry_window_seconds: float = Field(default=86400.0, gt=0)
    #: How long a passed triplet (and an auto-allowed network) passes at once, renewed
    #: at each use (RFC 6647 §4.3 asks for at least a week; postgrey keeps 35 days).
    pass_seconds: float = Field(default=36 * 86400.0, gt=0)
    #: Triplets a client network must pass before the whole network passes (0: never).
    auto_allow_after: int = Field(default=5, ge=0)
    #: Entries kept per table; beyond, the least recently used is forgotten.
    max_entries: int = Field(default=100_000, ge=1)
    #: Client networks never greylisted (CIDRs, e.g. a backup MX or a partner's relays).
    exempt_networks: list[str] = Field(default_factory=list)

    @field_validator("exempt_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value


class AntiAbuse(BaseModel):
    """Sender authentication and the built-in spam scorer for mail on the MX listener
    (issue 8, ``docs/anti-abuse.md``)."""

    #: Check and score MX mail (off: every message is taken as it is, with no headers added).
    enabled: bool = True
    #: A score at or above this goes to the recipient's Junk mailbox with X-Spam-Flag: YES.
    junk_threshold: float = 5.0
    #: A score at or above this is refused at the end of DATA (550 5.7.1), nothing stored.
    reject_threshold: float = 15.0
    #: DNS block lists (RFC 5782) asked about the client address, e.g. ["zen.spamhaus.org"].
    dnsbl_zones: list[str] = Field(default_factory=list)
    #: DNS allow lists, asked the same way; a listing lowers the score.
    dnswl_zones: list[str] = Field(default_factory=list)
    #: Refuse mail failing DMARC when the From: domain publishes p=reject (off: Junk).
    dmarc_reject_honoured: bool = True
    #: Answer 451 4.4.3 when an SPF, DKIM or DMARC lookup fails for now (off: score 0).
    tempfail_on_dns_error: bool = False
    #: Points per rule, overriding the defaults of ``adapters/scanners/scorer.py``.
    rule_weights: dict[str, float] = Field(default_factory=dict)
    #: RFC 7208 §4.6.4 limits: DNS-querying terms, and lookups that find nothing.
    spf_max_dns_lookups: int = Field(default=10, ge=1, le=100)
    spf_max_void_lookups: int = Field(default=2, ge=0, le=100)
    #: DKIM signatures checked per message (the rest are ignored).
    max_dkim_signatures: int = Field(default=10, ge=1, le=100)
    #: Shorter RSA keys make a DKIM signature permerror (RFC 8301 §3.2: at least 1024).
    min_rsa_key_bits: int = Field(default=1024, ge=1024)
    #: Points the recipient's own learning filter adds: weight * (2p - 1) for its spam
    #: probability p, so from -weight (surely ham) to +weight (surely spam); 0 turns it off.
    #: Above junk_threshold by default, so what a user taught is spam reaches their Junk
    #: on its own, and well below reject_threshold, so it never refuses mail alone.
    learning_weight: float = Field(default=6.0, ge=0.0, le=100.0)
    #: SpamAssassin's spamd and rspamd, their scores added to the built-in one.
    spamd: SpamDaemon = SpamDaemon()
    rspamd: Rspamd = Rspamd()
    #: Greylisting at RCPT on the MX listener; independent of ``enabled``.
    greylist: Greylisting = Greylisting()

    @field_validator("rule_weights")
    @classmethod
    def _known_rules(cls, value: dict[str, float]) -> dict[str, float]:
        from adapters.scanners.rules import DEFAULT_WEIGHTS

        unknown = sorted(set(value) - set(DEFAULT_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown rules {unknown}; known: {sorted(DEFAULT_WEIGHTS)}")
        return value


class Settings(BaseSettings):
    data_dir: Path = Path("./data")
    hostname: str = "localhost"
    master_key: str = ""
    default_quota_bytes: int = 1 << 30
    max_message_bytes: int = 64 * 1024 * 1024
    #: Authenticate every stored event at start-up (refuse to start on a tampered log).
    verify_on_start: bool = True
    listen: Listen = Listen()
    store: Store = Store()
    tls: Tls = Tls()
    smtp: Smtp = Smtp()
    imap: Imap = Imap()
    pop3: Pop3 = Pop3()
    auth: Auth = Auth()
    crypto: Crypto = Crypto()
    compliance: Compliance = Compliance()
    outbound: Outbound = Outbound()
    retention: Retention = Retention()
    portal: Portal = Portal()
    antiabuse: AntiAbuse = AntiAbuse()
    clamav: ClamAv = ClamAv()

    model_config = SettingsConfigDict(env_prefix="LEDGERMAIL_", env_nested_delimiter="__",
                                      extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments (command-line flags) win, then the environment, then the file.
        return (init_settings, env_settings)

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.data_dir.resolve()}"

    @property
    def sqlite_dir(self) -> Path:
        """Where the SQLite files and blobs live: the url's directory, else the data dir."""
        if self.store.url.startswith("sqlite:///"):
            return Path(self.store.url.removeprefix("sqlite:///"))
        return self.data_dir

    @property
    def is_postgres(self) -> bool:
        return self.store_url.startswith(("postgresql://", "postgres://"))

    @property
    def master_key_path(self) -> Path:
        if self.crypto.master_key_file:
            return Path(self.crypto.master_key_file)
        return self.data_dir / "master.key"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the TOML file, the environment and explicit overrides (in rising
    precedence). Raises ``ConfigError`` with a one-line reason."""
    file_values: dict[str, Any] = {}
    if config_file:
        path = Path(config_file)
        try:
            file_values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    try:
        from_env = Settings()
        env_values = from_env.model_dump(exclude_unset=True, by_alias=True)
        explicit = {k: v for k, v in overrides.items() if v is not None}
        merged = _merge(_merge(file_values, env_values), explicit)
        return Settings(**merged)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"setting {where}: {first['msg']}") from None
