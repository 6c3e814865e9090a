"""The ``ledgermail`` command (DESIGN §6, a contract: tests and users rely on it).

Every command takes ``--config FILE`` and ``--data-dir DIR``, works beside a running
``serve`` on the same store, prints a one-line error and exits non-zero on bad input:
2 for input the operator can correct, 1 for a store that is unsafe or unreachable.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adapters.config import ConfigError, Settings, load_settings
from domain.model.errors import DomainError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A one-line error for the operator."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line too (``--help`` shows the full usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"ledgermail: error: {message} (see: {self.prog} --help)\n")


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--config", metavar="FILE", default=default,
                        help="TOML configuration file")
    parser.add_argument("--data-dir", metavar="DIR", default=default,
                        help="data directory (default ./data, or LEDGERMAIL_DATA_DIR)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ledgermail", description=(
        "A mail server that records every processing of personal data as an encrypted, "
        "per-person event and erases a person by destroying their key."))
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _common(sub, top=False)
        return sub

    command("serve", "start every listener in one process (Ctrl-C stops)")

    domain = command("domain", "local mail domains")
    domain_cmds = domain.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = domain_cmds.add_parser("add", help="receive mail for a domain")
    _common(add, top=False)
    add.add_argument("name")
    _common(domain_cmds.add_parser("list", help="list local domains"), top=False)
    dns = domain_cmds.add_parser("dns", help="print the DNS records to publish for a domain "
                                             "(MX, SPF, DKIM, DMARC, MTA-STS)")
    _common(dns, top=False)
    dns.add_argument("name")

    user = command("user", "mail accounts")
    user_cmds = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = user_cmds.add_parser("add", help="create an account with its standard mailboxes")
    _common(add, top=False)
    add.add_argument("address")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--quota", type=int, metavar="BYTES", help="mailbox quota in bytes")
    _common(user_cmds.add_parser("list", help="list accounts"), top=False)
    passwd = user_cmds.add_parser("passwd", help="change an account's password")
    _common(passwd, top=False)
    passwd.add_argument("address")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    profile = user_cmds.add_parser("profile", help="show or correct an account's profile data "
                                   "(GDPR Art. 16); an empty value removes a field")
    _common(profile, top=False)
    profile.add_argument("address")
    for field_name in ("display-name", "organization", "locale", "time-zone"):
        profile.add_argument(f"--{field_name}", metavar="TEXT")

    alias = command("alias", "extra addresses delivering to an account")
    alias_cmds = alias.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = alias_cmds.add_parser("add", help="make ALIAS deliver to ACCOUNT (and log in as it)")
    _common(add, top=False)
    add.add_argument("alias")
    add.add_argument("account", metavar="ACCOUNT", help="the account's primary address")
    remove = alias_cmds.add_parser("remove", help="stop accepting mail for ALIAS")
    _common(remove, top=False)
    remove.add_argument("alias")
    listing = alias_cmds.add_parser("list", help="list aliases (of one account, or all)")
    _common(listing, top=False)
    listing.add_argument("account", nargs="?", metavar="ACCOUNT")

    deliver = command("deliver", "deliver a message from stdin to local addresses")
    deliver.add_argument("addresses", nargs="+", metavar="ADDRESS")

    export = command("export", "export everything stored about a person (zip)")
    export.add_argument("address")
    export.add_argument("--out", required=True, metavar="FILE", help="the zip file to write")

    erase = command("erase", "erase a person (crypto-shredding); prints the receipt as JSON")
    erase.add_argument("address")
    erase.add_argument("--reason", required=True, help="why (recorded in the receipt)")

    audit = command("audit", "show the record of processing, or verify it")
    audit.add_argument("address", nargs="?")
    audit.add_argument("--verify", action="store_true", help="exit 0 only when the trail is intact")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")

    hold = command("hold", "legal holds (a hold blocks erasure, and retention for its scope)")
    hold_cmds = hold.add_subparsers(dest="action", metavar="ACTION", required=True)
    place = hold_cmds.add_parser("place", help="place a legal hold on an account; prints its case id")
    _common(place, top=False)
    place.add_argument("address")
    place.add_argument("--reason", required=True)
    place.add_argument("--case-id", help="the case reference (default: a new case-<random>)")
    place.add_argument("--scope", default="all", metavar="all|MAILBOX",
                       help="the whole account (all, the default) or one mailbox")
    release = hold_cmds.add_parser("release", help="release an account's legal holds (or one)")
    _common(release, top=False)
    release.add_argument("address")
    release.add_argument("--case-id", help="release only this hold")
    hold_list = hold_cmds.add_parser("list", help="list active holds (of one account, or all)")
    _common(hold_list, top=False)
    hold_list.add_argument("address", nargs="?")

    retention = command("retention", "retention policies: delete mail older than N days (Art. 5(1)(e))")
    retention_cmds = retention.add_subparsers(dest="action", metavar="ACTION", required=True)
    rule_set = retention_cmds.add_parser("set", help="keep mail in a mailbox (or the account) N days")
    _common(rule_set, top=False)
    rule_set.add_argument("address")
    rule_set.add_argument("--days", required=True, type=int, metavar="N", help="maximum age in days")
    rule_set.add_argument("--mailbox", metavar="NAME", help="the mailbox (default: the whole account)")
    rule_clear = retention_cmds.add_parser("clear", help="remove a mailbox's (or the account) rule")
    _common(rule_clear, top=False)
    rule_clear.add_argument("address")
    rule_clear.add_argument("--mailbox", metavar="NAME", help="the mailbox (default: the account rule)")
    rule_list = retention_cmds.add_parser("list", help="list rules (of one account, or all)")
    _common(rule_list, top=False)
    rule_list.add_argument("address", nargs="?")
    _common(retention_cmds.add_parser("run", help="apply every policy now (serve does it on an interval)"),
            top=False)

    consent = command("consent", "the consent ledger: who agreed to which purpose (DESIGN §4)")
    consent_cmds = consent.add_subparsers(dest="action", metavar="ACTION", required=True)
    give = consent_cmds.add_parser("give", help="record that ADDRESS consents to a purpose")
    _common(give, top=False)
    give.add_argument("address")
    give.add_argument("--purpose", required=True, help="a short token, e.g. newsletter")
    give.add_argument("--basis", default="consent",
                      help="the legal basis (GDPR Art. 6(1)), default consent")
    withdraw = consent_cmds.add_parser("withdraw", help="withdraw ADDRESS's consent to a purpose")
    _common(withdraw, top=False)
    withdraw.add_argument("address")
    withdraw.add_argument("--purpose", required=True)
    listing = consent_cmds.add_parser("list", help="every purpose ADDRESS named, with its state")
    _common(listing, top=False)
    listing.add_argument("address")
    link = consent_cmds.add_parser("link", help="print ADDRESS's one-click unsubscribe link (RFC 8058)")
    _common(link, top=False)
    link.add_argument("address")
    link.add_argument("--purpose", required=True)

    token = command("token", "admin tokens for the compliance API (shown once, stored hashed)")
    token_cmds = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = token_cmds.add_parser("create", help="create a token and print it once")
    _common(create, top=False)
    create.add_argument("--scope", required=True, metavar="SCOPES",
                        help="comma-separated scopes, e.g. audit:read,erasure:write (admin: all)")
    create.add_argument("--name", default="admin", help="a label for the token (default admin)")
    _common(token_cmds.add_parser("list", help="list tokens (never their secrets)"), top=False)
    revoke = token_cmds.add_parser("revoke", help="revoke a token at once")
    _common(revoke, top=False)
    revoke.add_argument("token_id", metavar="TOKEN_ID")

    ban = command("ban", "brute-force bans: list, lift or place one (every server honours it)")
    ban_cmds = ban.add_subparsers(dest="action", metavar="ACTION", required=True)
    _common(ban_cmds.add_parser("list", help="list active bans: what, until, failures, protocol"),
            top=False)
    remove = ban_cmds.add_parser("remove", help="lift the ban on an IP address or login name at once")
    _common(remove, top=False)
    remove.add_argument("target", metavar="IP|LOGIN")
    ban_add = ban_cmds.add_parser("add", help="ban an IP address (or --login name) for some minutes")
    _common(ban_add, top=False)
    ban_add.add_argument("target", metavar="IP|LOGIN")
    ban_add.add_argument("--minutes", type=float, default=60.0, help="how long (default 60)")
    ban_add.add_argument("--login", action="store_true", help="TARGET is a login name, not an IP")

    queue = command("queue", "the outbound queue: what waits to be sent (like mailq)")
    queue.add_argument("--limit", type=int, default=1000, help="list at most this many (default 1000)")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None), data_dir=getattr(args, "data_dir", None))


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CommandError("passwords do not match")
    else:
        raise CommandError("no password given: use --password-stdin or run on a terminal")
    if not password:
        raise CommandError("empty password")
    return password


# -- commands --------------------------------------------------------------------------


def cmd_domain(container: Any, args: argparse.Namespace) -> int:
    from adapters import bootstrap

    if args.action == "add":
        name = container.app.add_domain(args.name)
        keys = bootstrap.dkim_keyring(container).keys_for(name)
        print(f"domain {name} added; DKIM selectors {keys.ed25519.selector} (Ed25519) and "
              f"{keys.rsa.selector} (RSA); publish its records: ledgermail domain dns {name}")
    elif args.action == "dns":
        print(bootstrap.domain_dns(container, args.name), end="")
    else:
        for name in container.app.list_domains():
            print(name)
    return EXIT_OK


def cmd_user(container: Any, args: argparse.Namespace) -> int:
    app = container.app
    if args.action == "add":
        password = read_password(args)
        account_id = app.create_account(args.address, password, args.quota)
        print(f"user {args.address.lower()} added (account {account_id})")
    elif args.action == "passwd":
        password = read_password(args)
        app.change_password(args.address, password)
        print(f"password of {args.address.lower()} changed")
    elif args.action == "profile":
        changes = {name: getattr(args, name) for name in ("display_name", "organization", "locale",
                                                          "time_zone") if getattr(args, name) is not None}
        profile = (app.rectify_profile(args.address, changes) if changes
                   else dict(app.account_for(args.address).profile))
        for name in ("display_name", "organization", "locale", "time_zone"):
            print(f"{name}: {profile.get(name, '')}")
    else:
        container.catch_up()
        for row in container.mailbox_view.accounts():
            aliases = f" aliases={','.join(row.aliases)}" if row.aliases else ""
            print(f"{row.address} quota={row.quota_bytes}{aliases}")
    return EXIT_OK


def cmd_alias(container: Any, args: argparse.Namespace) -> int:
    app = container.app
    if args.action == "add":
        app.add_alias(args.account, args.alias)
        print(f"alias {args.alias.lower()} delivers to {args.account.lower()}")
    elif args.action == "remove":
        # The alias names its own account, so it is all the use case needs.
        app.remove_alias(args.alias, args.alias)
        print(f"alias {args.alias.lower()} removed")
    else:
        container.catch_up()
        wanted = args.account.lower() if args.account else None
        if wanted is not None:
            app.account_id_for(wanted)  # an unknown account is an error, not an empty list
        for row in container.mailbox_view.accounts():
            if wanted in (None, row.address):
                for name in sorted(row.aliases):
                    print(f"{name} -> {row.address}")
    return EXIT_OK


def cmd_deliver(container: Any, args: argparse.Namespace) -> int:
    from adapters.bootstrap import intake
    from adapters.intake import Arrival

    raw = sys.stdin.buffer.read()
    if not raw.strip():
        raise CommandError("no message on standard input")
    for address in args.addresses:
        # The quota, as the SMTP listeners apply it at RCPT (a soft quota: see has_room).
        try:
            account_id = container.app.delivery_account_id(address)
        except DomainError:
            continue  # the delivery itself reports an unknown address
        if not container.app.has_room(account_id):
            raise CommandError(f"the mailbox of {address} is over its quota; nothing was delivered")
    # The same pipeline as SMTP: limits, Received: trace header, scan hook, delivery.
    accepted = intake(container).accept(Arrival("cli", list(args.addresses)), raw)
    assert accepted.delivery is not None
    result = accepted.delivery
    for address, ref in zip(_dedupe(args.addresses, len(result.copies)), result.copies, strict=False):
        print(f"delivered to {address.lower()}: INBOX uid {ref.uid}")
    return EXIT_OK


def _dedupe(addresses: Sequence[str], count: int) -> list[str]:
    seen: list[str] = []
    for address in addresses:
        if address.lower() not in seen:
            seen.append(address.lower())
    return seen[:count]


def cmd_export(container: Any, args: argparse.Namespace) -> int:
    from adapters.export_archive import write_archive

    out = Path(args.out)
    if not out.parent.exists():
        raise CommandError(f"directory {out.parent} does not exist")
    export = container.app.export_subject(args.address)
    container.catch_up()
    history = container.audit_trail.rows(export.subject_pseudonym)
    counts = write_archive(out, export, history)
    print(f"exported {args.address.lower()} to {out}: {counts['mailboxes']} mailboxes, "
          f"{counts['messages']} messages, {counts['history']} processing records")
    return EXIT_OK


def cmd_erase(container: Any, args: argparse.Namespace) -> int:
    receipt = container.app.erase_subject(args.address, args.reason)
    print(json.dumps(receipt, indent=2, sort_keys=True))
    return EXIT_OK


def cmd_audit(container: Any, args: argparse.Namespace) -> int:
    from adapters.audit_check import verify_audit

    container.catch_up()
    if args.verify:
        verdict = verify_audit(container)
        print(f"audit trail {'intact' if verdict.intact else 'BROKEN'}: {verdict.rows} rows, "
              f"{verdict.events} events checked; {verdict.reason}")
        return EXIT_OK if verdict.intact else EXIT_FAILURE
    subject = container.app.subject_pseudonym_for(args.address) if args.address else None
    for row in container.audit_trail.rows(subject):
        entry = row.entry
        if args.json:
            print(json.dumps({**entry.__dict__, "hash": row.hash}, sort_keys=True))
        else:
            print(f"{entry.position:>8} {entry.at} {entry.event_type:<28} "
                  f"{entry.subject or '-':<34} {entry.actor} {entry.protocol} {entry.purpose}")
    return EXIT_OK


def cmd_hold(container: Any, args: argparse.Namespace) -> int:
    app = container.app
    if args.action == "place":
        case_id = app.place_legal_hold(args.address, args.reason, case_id=args.case_id, scope=args.scope)
        print(f"legal hold {case_id} placed on {args.address.lower()} (scope {args.scope})")
    elif args.action == "release":
        released = app.release_legal_hold(args.address, args.case_id)
        print(f"{released} legal hold(s) on {args.address.lower()} released")
    else:
        for row in app.legal_holds(args.address):
            print(f"{row['address']} {row['case_id']} scope={row['scope']} placed={row['placed_at']} "
                  f"reason={json.dumps(row['reason'])}")
    return EXIT_OK


def cmd_retention(container: Any, args: argparse.Namespace) -> int:
    app = container.app
    where = getattr(args, "mailbox", None) or "(whole account)"
    if args.action == "set":
        app.set_retention(args.address, args.mailbox, args.days)
        print(f"retention of {args.address.lower()} {where}: {args.days} days")
    elif args.action == "clear":
        if app.clear_retention(args.address, args.mailbox):
            print(f"retention rule of {args.address.lower()} {where} cleared")
        else:
            print(f"{args.address.lower()} has no rule for {where}; nothing recorded")
    elif args.action == "list":
        for row in app.retention_policies(args.address):
            print(f"{row['address']} {row['mailbox'] or '*'} {row['max_age_days']} days set={row['set_at']}")
    else:
        counts = app.apply_retention()
        print(f"retention run: {counts['accounts']} account(s) with rules, {counts['deleted']} "
              f"message(s) deleted, {counts['held']} kept under a legal hold")
    return EXIT_OK


def cmd_consent(container: Any, args: argparse.Namespace) -> int:
    app = container.app
    address = args.address.lower()
    if args.action == "give":
        app.give_consent(args.address, args.purpose, basis=args.basis, source="cli")
        print(f"consent of {address} to {args.purpose} recorded ({args.basis})")
    elif args.action == "withdraw":
        if app.withdraw_consent(args.address, args.purpose, source="cli"):
            print(f"consent of {address} to {args.purpose} withdrawn")
        else:
            print(f"{address} has no consent to {args.purpose} to withdraw; nothing recorded")
    elif args.action == "link":
        from adapters.bootstrap import unsubscribe_link
        from domain.model.consent import check_purpose

        print(unsubscribe_link(container, args.address, check_purpose(args.purpose)))
    else:
        for row in app.consents_of(args.address):
            print(f"{row['purpose']} {row['state']} {row['basis']} {row['source']} {row['at']}")
    return EXIT_OK


def cmd_token(container: Any, args: argparse.Namespace) -> int:
    app = container.app
    if args.action == "create":
        token_id, plaintext = app.create_token(args.name, args.scope.split(","))
        print(plaintext)
        print(f"token {token_id} created; it is shown only this once", file=sys.stderr)
    elif args.action == "revoke":
        if app.revoke_token(args.token_id):
            print(f"token {args.token_id} revoked")
        else:
            print(f"token {args.token_id} was already revoked")
    else:
        for row in app.list_tokens():
            state = f"revoked={row['revoked_at']}" if row["revoked_at"] else "active"
            print(f"{row['token_id']} {row['name']} {','.join(row['scopes'])} "
                  f"created={row['created_at']} {state}")
    return EXIT_OK


def cmd_ban(container: Any, args: argparse.Namespace) -> int:
    """Bans are events (issue 8): running servers re-read them within
    ``auth.ban_refresh_seconds``."""
    app = container.app
    if args.action == "remove":
        lifted = app.lift_ban(args.target)
        print(f"ban on {lifted.kind} {args.target} lifted")
    elif args.action == "add":
        if not args.minutes > 0:
            raise CommandError("--minutes must be more than 0")
        kind = "login" if args.login else "ip"
        if app.place_ban(kind, args.target, args.minutes * 60, 0, "cli"):
            print(f"{kind} {args.target} banned for {args.minutes:g} minute(s)")
        else:
            print(f"{kind} {args.target} is banned already")
    else:
        app.expire_bans()  # what ran out is lifted (and its target shredded) first
        rows = app.ban_listing()
        for row in rows:
            print(f"{row['kind']} {row['target']} until={row['until']} failures={row['failures']} "
                  f"protocol={row['protocol']} placed={row['placed_at']}")
        print(f"{len(rows)} active ban(s)")
    return EXIT_OK


def cmd_queue(container: Any, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    container.catch_up()
    ids = container.mailbox_view.due_outbound("9999-12-31T00:00:00.000000Z", args.limit)
    rows = container.app.queue_listing(ids)
    for row in rows:
        print(f"{row['id']} {row['status']} {row['domain']} attempts={row['attempts']} "
              f"pending={row['pending']} queued={row['queued_at']} next={row['due_at']}")
    total = container.mailbox_view.queue_size()
    print(f"{total} message(s) queued" + (f", {len(rows)} listed" if len(rows) < total else ""))
    return EXIT_OK


COMMANDS: dict[str, Callable[[Any, argparse.Namespace], int]] = {
    "domain": cmd_domain,
    "user": cmd_user,
    "alias": cmd_alias,
    "deliver": cmd_deliver,
    "export": cmd_export,
    "erase": cmd_erase,
    "audit": cmd_audit,
    "hold": cmd_hold,
    "retention": cmd_retention,
    "consent": cmd_consent,
    "queue": cmd_queue,
    "token": cmd_token,
    "ban": cmd_ban,
}


def run(args: argparse.Namespace) -> int:
    from adapters.bootstrap import build
    from domain.application.context import acting

    settings = settings_from(args)
    if args.command == "serve":
        from adapters.serve import serve

        return serve(settings)
    container = build(settings)
    try:
        with acting(f"admin:cli:uid{os.getuid()}", protocol="cli", purpose="administration"):
            code = COMMANDS[args.command](container, args)
        try:
            container.catch_up(timeout=30)
        except TimeoutError:
            print("ledgermail: warning: views are still catching up", file=sys.stderr)
        return code
    finally:
        container.close()


def error_code(error: BaseException) -> tuple[int, str] | None:
    """Map an exception to (exit code, one-line message), or None for a real bug."""
    from adapters.bootstrap import StartupError
    from adapters.crypto.errors import CryptoError
    from adapters.crypto.master_key import MasterKeyError
    from domain.application.erasure import ErasureIncomplete

    if isinstance(error, CommandError):
        return error.code, str(error)
    if isinstance(error, (DomainError, ValueError, ConfigError)):
        return EXIT_USAGE, str(error)
    if isinstance(error, (StartupError, CryptoError, MasterKeyError, ErasureIncomplete)):
        return EXIT_FAILURE, str(error)
    if isinstance(error, TimeoutError):
        return EXIT_FAILURE, f"timed out: {error}"
    if isinstance(error, OSError):
        return EXIT_FAILURE, f"{error.strerror or error}: {error.filename or ''}".rstrip(": ")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("LEDGERMAIL_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    # Databases, blobs and exports hold personal data: nobody but the owner reads them.
    os.umask(0o077)
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``ledgermail audit | head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # noqa: BLE001 - every error becomes one line
        mapped = error_code(error)
        if mapped is None:
            logging.getLogger("ledgermail").exception("internal error")
            print(f"ledgermail: internal error: {type(error).__name__}: {error}", file=sys.stderr)
            return EXIT_FAILURE
        code, message = mapped
        print(f"ledgermail: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
