"""Userspace WireGuard: wireguard-go, configured over its UAPI socket."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from netsetup import faults, link
from netsetup.errors import BackendError
from netsetup.wireguard import DeviceChange, DeviceState, uapi

log = logging.getLogger(__name__)

SOCKET_DIR = Path("/run/wireguard")  # compiled into wireguard-go
START_TIMEOUT = 5.0
UAPI_TIMEOUT = 300.0


class UserspaceBackend:
    name = "userspace"

    def __init__(self, wireguard_go: str, run_dir: str) -> None:
        self.wireguard_go = wireguard_go
        self.run_dir = Path(run_dir)

    def socket_path(self, interface: str) -> Path:
        return SOCKET_DIR / f"{interface}.sock"

    def pid_path(self, interface: str) -> Path:
        return self.run_dir / f"wireguard-go.{interface}.pid"

    def create(self, interface: str) -> None:
        """Start wireguard-go for `interface` in a session of its own."""
        import subprocess  # the only process netsetup starts on an apply

        self.run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        # Any value but "1" makes wireguard-go re-execute itself forever.
        env.pop("WG_PROCESS_FOREGROUND", None)
        log_path = self.run_dir / f"wireguard-go.{interface}.log"
        with open(log_path, "ab") as log_file:
            try:
                process = subprocess.Popen(
                    [self.wireguard_go, "-f", interface],
                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                    env=env, start_new_session=True, close_fds=True,
                )
            except OSError as exc:
                raise BackendError(
                    f"{interface}: cannot start {self.wireguard_go}: "
                    f"{exc.strerror}") from exc
        self.pid_path(interface).write_text(f"{process.pid}\n")
        faults.point("wireguard-go spawned")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BackendError(
                    f"{interface}: wireguard-go exited with status "
                    f"{process.returncode}; see {log_path}")
            if self._answers(interface):
                log.info("%s: wireguard-go started (pid %d)", interface,
                         process.pid)
                return
            time.sleep(0.001)  # it answers within a few ms
        process.kill()
        raise BackendError(f"{interface}: wireguard-go did not open its UAPI "
                           f"socket within {START_TIMEOUT:.0f} s")

    def read(self, interface: str) -> DeviceState | None:
        try:
            reply = self._request(interface, b"get=1\n\n")
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        return uapi.parse_get(reply)

    def configure(self, interface: str, change: DeviceChange) -> None:
        if not change:
            return
        try:
            reply = self._request(interface, uapi.encode_set(change))
        except TimeoutError as exc:
            raise BackendError(
                f"{interface}: wireguard-go did not confirm the configuration "
                f"within {UAPI_TIMEOUT:.0f} s; run apply again to finish "
                "it") from exc
        errno = uapi.parse_errno(reply)
        if errno != 0:
            raise BackendError(f"{interface}: wireguard-go refused the "
                               f"configuration (errno {errno})")

    def delete(self, interface: str) -> None:
        """Remove the link; wireguard-go exits when its tun device goes."""
        link.delete(interface)
        pid_path = self.pid_path(interface)
        try:
            pid = int(pid_path.read_text())
        except (FileNotFoundError, ValueError):
            return
        _wait_or_kill(pid)
        pid_path.unlink(missing_ok=True)

    def _answers(self, interface: str) -> bool:
        try:
            self._request(interface, b"get=1\n\n")
        except OSError:
            return False
        return True

    def _request(self, interface: str, request: bytes) -> str:
        path = self.socket_path(interface)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            # wireguard-go answers a `set` only when it has acted on every
            # peer; seen to take minutes for 1000 peers whose endpoints do
            # not answer ARP. Long, but not for ever.
            sock.settimeout(UAPI_TIMEOUT)
            sock.connect(str(path))
            sock.sendall(request)
            reply = b""
            # The reply ends with "errno=N" and a blank line.
            while not (b"errno=" in reply and reply.endswith(b"\n\n")):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return reply.decode()


def _wait_or_kill(pid: int, timeout: float = 2.0) -> None:
    if not _is_wireguard_go(pid):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_wireguard_go(pid):
            return
        time.sleep(0.01)
    os.kill(pid, 15)


def _is_wireguard_go(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "wireguard-go"
    except OSError:
        return False
