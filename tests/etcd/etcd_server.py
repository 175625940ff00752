"""Real etcd members for the tests: Debian's `etcd` on free loopback ports, each in its own
data directory, ended by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pyetcd

START_TIMEOUT_S = 30


def etcd_binary() -> str:
    found = shutil.which("etcd")
    if found is None:
        raise RuntimeError("etcd is not installed: apt-get install etcd-server etcd-client "
                           "(scripts/test.sh does it)")
    return found


def free_ports(n: int) -> list[int]:
    """n ports free on 127.0.0.1 right now (all bound at once, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Tls:
    """Files for a TLS etcd: the CA, the server's pair, and a client pair that etcd
    requires (--client-cert-auth)."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@dataclass
class EtcdCluster:
    """One or more etcd members on 127.0.0.1 under base (a temporary directory)."""

    base: Path
    size: int = 1
    tls: Tls | None = None
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = free_ports(2 * self.size)
        for i in range(self.size):
            name = f"m{i}"
            self.members.append(Member(name, ports[2 * i], ports[2 * i + 1],
                                       self.base / name, self.base / f"{name}.log"))

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(m.endpoint for m in self.members)

    def _scheme(self) -> str:
        return "https" if self.tls else "http"

    def _command(self, m: Member, state: str) -> list[str]:
        peers = ",".join(f"{x.name}=http://127.0.0.1:{x.peer_port}" for x in self.members)
        client_url = f"{self._scheme()}://{m.endpoint}"
        cmd = [
            etcd_binary(), "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", f"http://127.0.0.1:{m.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{m.peer_port}",
            "--initial-cluster", peers, "--initial-cluster-state", state,
            "--initial-cluster-token", f"netplan-test-{os.getpid()}-{self.members[0].peer_port}",
        ]
        if self.tls:
            cmd += ["--cert-file", str(self.tls.cert), "--key-file", str(self.tls.key),
                    "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]
        return cmd

    def start_member(self, m: Member) -> None:
        """Start (or restart, on its data directory) one member."""
        state = "existing" if m.data_dir.exists() else "new"
        with open(m.log, "ab") as log:
            m.proc = subprocess.Popen(self._command(m, state), stdout=log, stderr=log,
                                      start_new_session=True)

    def start(self) -> EtcdCluster:
        self.base.mkdir(parents=True, exist_ok=True)
        try:
            for m in self.members:
                self.start_member(m)
            self.wait_healthy()
        except BaseException:
            self.stop()  # no member outlives a failed start
            raise
        return self

    def client(self, m: Member | None = None, **kwargs) -> pyetcd.Etcd3Client:
        """A raw client of one member (the first by default), for test oracles."""
        m = m or self.members[0]
        if self.tls:
            kwargs.setdefault("ca_cert", str(self.tls.ca))
            kwargs.setdefault("cert_cert", str(self.tls.client_cert))
            kwargs.setdefault("cert_key", str(self.tls.client_key))
        return pyetcd.client("127.0.0.1", m.client_port, timeout=5, **kwargs)

    def wait_healthy(self, members: list[Member] | None = None) -> None:
        """Until every given member answers a linearizable read (so a leader exists)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        for m in members or self.members:
            while True:
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited with {m.proc.returncode}:\n"
                                       + m.log.read_text()[-3000:])
                try:
                    with self.client(m) as c:
                        c.get("/health-probe")
                    break
                except (pyetcd.Etcd3Exception, grpc.RpcError) as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"etcd {m.name} not healthy after "
                                           f"{START_TIMEOUT_S}s:\n" + m.log.read_text()[-3000:]
                                           ) from exc
                    time.sleep(0.1)

    def kill(self, m: Member) -> None:
        """SIGKILL one member by its PID."""
        if m.proc is not None and m.proc.poll() is None:
            os.kill(m.proc.pid, signal.SIGKILL)
            m.proc.wait(timeout=10)

    def stop(self) -> None:
        for m in self.members:
            self.kill(m)

    def etcdctl(self, *args: str, m: Member | None = None) -> str:
        m = m or self.members[0]
        cmd = ["etcdctl", f"--endpoints={self._scheme()}://{m.endpoint}"]
        if self.tls:
            cmd += [f"--cacert={self.tls.ca}", f"--cert={self.tls.client_cert}",
                    f"--key={self.tls.client_key}"]
        cmd += args
        return subprocess.run(cmd, capture_output=True, text=True, check=True,
                              timeout=30).stdout
