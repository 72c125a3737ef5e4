"""The web server: uvicorn serving project.asgi, HTTP and websockets, with the options the product
relies on. `python -m project.web [--host H] [--port P] [any other uvicorn option]`.

uvicorn rather than daphne because it waits for a client's socket to drain before it takes the next
block of a response: a download holds no more than its buffer, however slow the client (daphne
writes every block into Twisted's buffer at once; measured in tests/test_downloads.py and docs/operations.md).
"""

import os
import sys

OPTIONS = {
    # channels' router takes HTTP and websockets only
    "--lifespan": "off",
    "--ws": "websockets-sansio",
    # a client's message is at most 4 KB (notifications.consumers)
    "--ws-max-size": "65536",
    "--timeout-graceful-shutdown": "30",
}


LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def host_of(argv: list[str]) -> str:
    for option, value in zip(argv, argv[1:], strict=False):
        if option == "--host":
            return value
    return next((arg.split("=", 1)[1] for arg in argv if arg.startswith("--host=")), "127.0.0.1")


def refuse_public_debug(argv: list[str]) -> None:
    """Debug mode shows settings and stack traces to whoever asks: it serves this machine only."""
    import django
    from django.conf import settings

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    host = host_of(argv)
    if settings.DEBUG and host not in LOOPBACK:
        reason = "debug pages show settings and code to anyone who can reach them"
        advice = "Set DJANGO_DEBUG=false and a DJANGO_SECRET_KEY of your own, or listen on 127.0.0.1."
        sys.exit(f"Refusing to listen on {host} with DJANGO_DEBUG on: {reason}. {advice}")


# Connections to PostgreSQL each web process shares among its requests (project.settings).
POOL_SIZE = "20"


def main() -> None:
    from uvicorn.main import main as uvicorn_main

    os.environ.setdefault("DATABASE_POOL_SIZE", POOL_SIZE)
    refuse_public_debug(sys.argv[1:])
    options = [word for pair in OPTIONS.items() for word in pair]
    sys.argv = ["uvicorn", "project.asgi:application", *options, *sys.argv[1:]]
    uvicorn_main()


if __name__ == "__main__":
    main()
