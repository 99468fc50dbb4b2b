"""The `consultbook` command line.

Exit status: 0 on success, 2 on bad usage, 1 on failure, always with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from engine.errors import ConsultbookError


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


# Argument types: a value that can never be right is bad usage (exit 2, one line), found
# while parsing, before any setting is read or any database opened.

_DIGITS = re.compile(r"[0-9]{1,9}")


def _port(value: str) -> int:
    # ASCII digits only: int() would also take fullwidth digits or " 80 ".
    if not _DIGITS.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number")
    port = int(value)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port between 1 and 65535")
    return port


def _positive(value: str) -> int:
    if not _DIGITS.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def _timezone(value: str) -> str:
    # The same check install_shop makes, so the two can never disagree.
    from engine.errors import ValidationError
    from engine.services.validation import timezone

    try:
        return timezone("--timezone", value)
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an IANA timezone such as 'Europe/Berlin'") from None


def _shop_domain(value: str) -> str:
    from engine.shopify.signatures import valid_shop_domain

    domain = value.strip().lower()
    if not valid_shop_domain(domain):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a shop domain like example.myshopify.com")
    return domain


def _parser() -> argparse.ArgumentParser:
    """The whole command line. Every option's help line states its default
    (``%(default)s``), or that it is required; tests/test_cli_options.py checks it."""
    p = _Parser(prog="consultbook", description="Consultation booking for Shopify stores.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the web app (and, with no broker, the worker)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=_port, default=8000,
                       help="port to listen on; refused if another server listens there "
                            "(default: %(default)s)")
    serve.add_argument("--workers", type=_positive, default=2,
                       help="web worker processes (default: %(default)s)")

    sub.add_parser("migrate", help="bring the database schema to head")

    demo = sub.add_parser("demo", help="run the embedded demo shop")
    demo.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default: %(default)s)")
    demo.add_argument("--port", type=_port, default=8000,
                      help="port to listen on (default: %(default)s)")
    demo.add_argument("--no-serve", action="store_true",
                      help="seed the demo shop and print its URLs, but do not start the "
                           "server (default: serve)")

    shop = sub.add_parser("shop", help="shops").add_subparsers(dest="shop_command",
                                                              required=True, parser_class=_Parser)
    install = shop.add_parser("install", help="provision a shop without the OAuth dance")
    install.add_argument("domain", type=_shop_domain,
                         help="the shop's myshopify.com domain (required)")
    install.add_argument("--timezone", type=_timezone, required=True,
                         help="the shop's IANA timezone, e.g. Europe/Berlin (required)")
    install.add_argument("--access-token", default=None,
                         help="an Admin API access token to store, encrypted "
                              "(default: none; the shop connects later)")

    keys = sub.add_parser("keys", help="encryption keys").add_subparsers(
        dest="keys_command", required=True, parser_class=_Parser)
    keys.add_parser("generate", help="print a new encryption key")
    keys.add_parser("rotate", help="re-encrypt every stored secret with the first key")

    worker = sub.add_parser("worker", help="run the Celery worker against the broker URL")
    worker.add_argument("--concurrency", type=_positive, default=4,
                        help="worker processes (default: %(default)s)")
    worker.add_argument("--loglevel", default="info",
                        choices=("debug", "info", "warning", "error", "critical"),
                        help="Celery's log level (default: %(default)s)")
    worker.add_argument("--beat", action="store_true",
                        help="also run the scheduler in this worker, for small deployments "
                             "(default: off)")
    beat = sub.add_parser("beat", help="run the Celery scheduler (beat) against the broker URL")
    beat.add_argument("--loglevel", default="info",
                      choices=("debug", "info", "warning", "error", "critical"),
                      help="Celery's log level (default: %(default)s)")
    beat.add_argument("--schedule", default=None,
                      help="beat's state file (default: celerybeat-schedule in the working "
                           "directory)")
    sub.add_parser("sweep", help="one pass of the hold sweeper")
    reminders = sub.add_parser("reminders", help="reminders").add_subparsers(
        dest="reminders_command", required=True, parser_class=_Parser)
    run = reminders.add_parser("run", help="one pass of the reminder scan")
    run.add_argument("--limit", type=_positive, default=500,
                     help="most reminders to send in this pass (default: %(default)s)")
    return p


def _config(**kwargs: Any) -> Any:
    from engine.config import from_env

    return from_env(**kwargs)


def cmd_migrate(args: argparse.Namespace) -> int:
    from engine.store import Database
    from engine.store.migrate import current_revisions, upgrade

    config = _config(require_secrets=False)
    db = Database(config.database_url)
    upgrade(db.engine)
    print(f"database at revision {', '.join(sorted(current_revisions(db.engine)))}")
    return 0


def cmd_shop_install(args: argparse.Namespace) -> int:
    from engine.bootstrap import bootstrap
    from engine.services.shops import install_shop
    from engine.store.migrate import check_schema

    ctx = bootstrap(_config())
    check_schema(ctx.db.engine)
    shop = install_shop(ctx.db, ctx.clock, ctx.keyring, args.domain, args.timezone,
                        args.access_token)
    print(f"installed {shop.domain} ({shop.timezone}) as {shop.id}")
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from engine.crypto import generate_key

    print(generate_key())
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from engine.bootstrap import bootstrap
    from engine.services.secrets import rotate_all
    from engine.store.migrate import check_schema

    ctx = bootstrap(_config())
    check_schema(ctx.db.engine)
    done, total = rotate_all(ctx.db, ctx.keyring)
    print(f"re-encrypted {done} of {total} stored secrets with the current key")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from engine.bootstrap import bootstrap
    from engine.store.migrate import check_schema
    from web.server import serve

    config = _config()
    ctx = bootstrap(config)
    check_schema(ctx.db.engine)
    ctx.db.dispose()
    serve(config, host=args.host, port=args.port, workers=args.workers)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from engine.bootstrap import bootstrap
    from engine.demo import demo_config, demo_urls, sample_availability_url, seed
    from engine.store.migrate import upgrade
    from web.server import serve

    config = _config(demo=True)
    if "CONSULTBOOK_APP_URL" not in os.environ:
        config = config.with_(app_url=f"http://{args.host}:{args.port}")
    # The demo plays Shopify's Admin API too: nothing it does leaves the machine.
    config = demo_config(config, host=args.host, port=args.port)
    ctx = bootstrap(config)
    upgrade(ctx.db.engine)
    demo = seed(ctx)
    base = config.app_url
    print("consultbook demo — embedded default (SQLite, in-process worker, outbox mailer)")
    print(f"  database:            {config.database_url}")
    print(f"  demo shop:           {demo.shop.domain} ({demo.shop.timezone})")
    for title, sid in demo.services.items():
        print(f"  service:             {sid}  {title}")
    for name, eid in demo.experts.items():
        print(f"  expert:              {eid}  {name}")
    print("  open in a browser:")
    for label, url in demo_urls(base, demo):
        print(f"    {label + ':':<32} {url}")
    print(f"  outbox folder:       {os.path.abspath(config.outbox_dir)}")
    print(f"  health:              {base}/healthz")
    print(f"  availability (demo): {base}/demo/availability  (signs a fresh App Proxy URL)")
    print(f"  availability (signed, valid {config.proxy_max_age_seconds}s):")
    print(f"    {sample_availability_url(ctx, demo)}")
    sys.stdout.flush()
    ctx.db.dispose()
    if args.no_serve:
        return 0
    serve(config, host=args.host, port=args.port, workers=1)
    return 0


def _worker_deps() -> Any:
    from engine.bootstrap import bootstrap
    from engine.store.migrate import check_schema
    from engine.tasks.jobs import Deps

    ctx = bootstrap(_config())
    check_schema(ctx.db.engine)
    return Deps(config=ctx.config, db=ctx.db, clock=ctx.clock, plugins=ctx.plugins)


def _check_plugins(config: Any) -> None:
    """Discover and load the plugins before Celery starts: a broken one stops start-up
    here with one line (PluginError), instead of failing every task. Prefork children
    inherit what was discovered (engine.plugins discovers once per process)."""
    from engine.plugins import make_plugin_manager

    make_plugin_manager(config)


def cmd_worker(args: argparse.Namespace) -> int:
    from engine.store import Database
    from engine.store.migrate import check_schema
    from engine.tasks import QUEUE, make_celery

    config = _config()
    _check_plugins(config)
    app = make_celery(config)
    db = Database(config.database_url)
    check_schema(db.engine)
    db.dispose()
    argv = ["worker", "--pool=prefork", f"--concurrency={args.concurrency}",
            f"--loglevel={args.loglevel}", "-Q", QUEUE, "--without-gossip", "--without-mingle"]
    if args.beat:
        argv.append("--beat")
    code = app.worker_main(argv)
    return int(code or 0)


def cmd_beat(args: argparse.Namespace) -> int:
    from engine.tasks import make_celery

    config = _config()
    _check_plugins(config)
    app = make_celery(config)
    argv = ["beat", f"--loglevel={args.loglevel}"]
    if args.schedule:
        argv += ["--schedule", args.schedule]
    code = app.start(argv)
    return int(code or 0)


def cmd_sweep(args: argparse.Namespace) -> int:
    from engine.tasks.jobs import sweep_holds

    result = sweep_holds(_worker_deps())
    print(f"expired {result['expired']} holds, deleted {result['deleted']} old holds, "
          f"closed {result['stuck_reminders']} interrupted reminders")
    return 0


def cmd_reminders_run(args: argparse.Namespace) -> int:
    from engine.tasks.jobs import send_reminders

    r = send_reminders(_worker_deps(), args.limit)
    print(f"{r.claimed} due: {len(r.sent)} sent, {len(r.skipped)} skipped, "
          f"{len(r.retried)} to retry, {len(r.failed)} failed")
    return 1 if r.failed and not r.sent else 0


COMMANDS = {
    ("serve",): cmd_serve,
    ("migrate",): cmd_migrate,
    ("demo",): cmd_demo,
    ("shop", "install"): cmd_shop_install,
    ("keys", "generate"): cmd_keys_generate,
    ("keys", "rotate"): cmd_keys_rotate,
    ("worker",): cmd_worker,
    ("beat",): cmd_beat,
    ("sweep",): cmd_sweep,
    ("reminders", "run"): cmd_reminders_run,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    key = tuple(v for v in (args.command, getattr(args, "shop_command", None),
                            getattr(args, "keys_command", None),
                            getattr(args, "reminders_command", None)) if v)
    try:
        return COMMANDS[key](args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except ConsultbookError as exc:
        print(f"consultbook: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"consultbook: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
