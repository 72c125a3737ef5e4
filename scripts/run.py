"""Run the whole stack on one machine: migrate, seed demo data, then the web server (uvicorn), RQ
workers and the sweeper.

A child that exits is started again (at most RESTARTS times in RESTART_WINDOW seconds, then the
stack stops and says why). Ctrl-C stops them all. Settings come from the environment (.env.example).
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
    "web": [PYTHON, "-m", "project.web", "--host", HOST, "--port", PORT],
    # Niced: on a shared machine, background reports yield the CPU to web requests.
    "worker": [
        "nice",
        "-n",
        "10",
        *manage("rqworker", "reports", "--serializer", "rq.serializers.JSONSerializer"),
    ],
    "sweeper": manage("sweep_reports", "--every", "10"),
}
RESTARTS, RESTART_WINDOW = 5, 600


def main() -> int:
    subprocess.run(manage("migrate", "--noinput", "-v", "0"), cwd=ROOT, check=True)
    subprocess.run(manage("seed_demo", "--orders", DEMO_ORDERS, "--if-empty"), cwd=ROOT, check=True)

    commands = {}
    for name, command in PROCESSES.items():
        copies = WORKERS if name == "worker" else 1
        commands.update({f"{name}{n + 1 if copies > 1 else ''}": command for n in range(copies)})
    supervise(commands)
    print("Stopped.", flush=True)
    return 0


def supervise(commands: dict[str, list[str]]) -> None:
    """Run the commands until Ctrl-C (or one keeps dying), starting again any that exits."""
    children = {name: subprocess.Popen(command, cwd=ROOT) for name, command in commands.items()}
    restarts: dict[str, list[float]] = {name: [] for name in children}
    print(f"\n  Open http://{HOST}:{PORT}/reports/  (admin: http://{HOST}:{PORT}/admin/)  Ctrl-C stops.\n", flush=True)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        for name, process in children.items():
            if process.poll() is None or stopping:
                continue
            now = time.monotonic()
            restarts[name] = [t for t in restarts[name] if now - t < RESTART_WINDOW] + [now]
            if len(restarts[name]) > RESTARTS:
                print(
                    f"{name} exited with {process.returncode} {RESTARTS} times in {RESTART_WINDOW // 60} minutes; "
                    "stopping the rest.",
                    flush=True,
                )
                stopping = True
                break
            count = f"{len(restarts[name])} of {RESTARTS} restarts in {RESTART_WINDOW // 60} minutes"
            print(f"{name} exited with {process.returncode}; starting it again ({count}).", flush=True)
            children[name] = subprocess.Popen(commands[name], cwd=ROOT)
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


if __name__ == "__main__":
    sys.exit(main())
