"""Small programs the lab runs inside its namespaces.

`serve PORT...` answers TCP connections on each port (a stand-in for the
cluster's service); `probe HOST:PORT...` tries a TCP connect to each target
in parallel and prints a JSON list of booleans.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor


def _serve_port(port: int) -> None:
    server = socket.create_server(("::", port), family=socket.AF_INET6,
                                  dualstack_ipv6=True, reuse_port=False)
    while True:
        conn, _ = server.accept()
        with conn:
            try:
                conn.sendall(b"ok\n")
            except OSError:
                pass


def serve(ports: list[int]) -> None:
    """Accept connections on every port until killed."""
    threads = [threading.Thread(target=_serve_port, args=(p,), daemon=True)
               for p in ports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def split_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def connect(target: str, timeout: float) -> bool:
    """Say whether a TCP connection to `target` opens and says hello."""
    host, port = split_target(target)
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            # The lab service says "ok", sshd its banner: any greeting
            # proves the connection really reached the listener.
            return bool(conn.recv(16))
    except OSError:
        return False


def probe(targets: list[str], timeout: float) -> list[bool]:
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        return list(pool.map(lambda t: connect(t, timeout), targets))


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "serve":
        serve([int(port) for port in args])
        return 0
    if command == "probe":
        timeout = float(args[0])
        print(json.dumps(probe(args[1:], timeout)))
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
