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


def _echo_port(port: int) -> None:
    server = socket.create_server(("::", port), family=socket.AF_INET6,
                                  dualstack_ipv6=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket) -> None:
    with conn:
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            conn.sendall(data)


def serve(ports: list[int]) -> None:
    """Accept connections on every port until killed."""
    # The last port echoes what it gets: long-lived connections for the
    # re-keying tests; the others greet and close.
    threads = [threading.Thread(target=_serve_port, args=(p,), daemon=True)
               for p in ports[:-1]]
    threads.append(threading.Thread(target=_echo_port, args=(ports[-1],),
                                    daemon=True))
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


def stream(target: str, seconds: float, interval: float) -> dict[str, float]:
    """Send a byte every `interval` over one connection, for `seconds`.

    Returns the longest wait for an echo (the tunnel gap seen by a live
    TCP connection) and whether the connection lived to the end.
    """
    import time

    host, port = split_target(target)
    conn = socket.create_connection((host, port), timeout=5)
    conn.settimeout(30)
    longest = 0.0
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.monotonic()
        conn.sendall(b"x")
        if conn.recv(1) != b"x":
            return {"alive": 0.0, "longest_gap": longest, "sent": sent}
        sent += 1
        longest = max(longest, time.monotonic() - start)
        time.sleep(interval)
    conn.close()
    return {"alive": 1.0, "longest_gap": longest, "sent": sent}


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "serve":
        serve([int(port) for port in args])
        return 0
    if command == "stream":
        print(json.dumps(stream(args[0], float(args[1]), float(args[2]))))
        return 0
    if command == "probe":
        timeout = float(args[0])
        print(json.dumps(probe(args[1:], timeout)))
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
