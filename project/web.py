"""The web server: uvicorn serving project.asgi, HTTP and websockets, with the options the product
relies on. `python -m project.web [--host H] [--port P] [any other uvicorn option]`.

uvicorn rather than daphne because it waits for a client's socket to drain before it takes the next
block of a response: a download holds no more than its buffer, however slow the client (daphne
writes every block into Twisted's buffer at once; measured in tests/test_downloads.py and the README).
"""

import sys

OPTIONS = {
    # channels' router takes HTTP and websockets only
    "--lifespan": "off",
    "--ws": "websockets-sansio",
    # a client's message is at most 4 KB (notifications.consumers)
    "--ws-max-size": "65536",
    "--timeout-graceful-shutdown": "30",
}


def main() -> None:
    from uvicorn.main import main as uvicorn_main

    options = [word for pair in OPTIONS.items() for word in pair]
    sys.argv = ["uvicorn", "project.asgi:application", *options, *sys.argv[1:]]
    uvicorn_main()


if __name__ == "__main__":
    main()
