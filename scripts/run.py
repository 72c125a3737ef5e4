"""Run the whole stack on one machine: migrate, seed demo data, then daphne + an RQ worker + the sweeper.

Ctrl-C stops them all. Settings come from the environment (see .env.example).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = os.environ.get("PORT", "8000")
DEMO_ORDERS = os.environ.get("DEMO_ORDERS", "100000")
WORKERS = int(os.environ.get("WORKERS", "1"))
# A local demo: debug mode (and its development secret key) unless the environment says otherwise.
os.environ.setdefault("DJANGO_DEBUG", "true")


def manage(*args: str) -> list[str]:
    return [PYTHON, "manage.py", *args]


PROCESSES = {
    "web": [PYTHON, "-m", "daphne", "-b", HOST, "-p", PORT, "project.asgi:application"],
    # Niced: on a shared machine, background reports yield the CPU to web requests.
    "worker": [
        "nice",
        "-n",
        "10",
        *manage("rqworker", "reports", "--with-scheduler", "--serializer", "rq.serializers.JSONSerializer"),
    ],
    "sweeper": manage("sweep_reports", "--every", "60"),
}


def main() -> int:
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), cwd=ROOT, check=True)
    subprocess.run(manage("seed_demo", "--orders", DEMO_ORDERS, "--if-empty"), cwd=ROOT, check=True)

    children = {}
    for name, command in PROCESSES.items():
        copies = WORKERS if name == "worker" else 1
        for n in range(copies):
            children[f"{name}{n + 1 if copies > 1 else ''}"] = subprocess.Popen(command, cwd=ROOT)
    print(f"\n  Open http://{HOST}:{PORT}/reports/  (admin: http://{HOST}:{PORT}/admin/)  Ctrl-C stops.\n", flush=True)

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        for name, process in children.items():
            if process.poll() is not None:
                print(f"{name} exited with {process.returncode}; stopping the rest.", flush=True)
                stopping = True
        time.sleep(0.5)
    for process in children.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for process in children.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
