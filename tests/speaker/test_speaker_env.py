"""ExaBGP and the agent start with only the variables they need (fault 9 of issue 14).

The supervisor's environment holds the etcd password ($NETPLAN_ETCD_PASSWORD) and the MD5
passwords the spec names by `passwordEnv`; ExaBGP gets the MD5 passwords in its
configuration file, and the agent gets the etcd password over its report channel. Neither
finds a secret in /proc/PID/environ, where any process of the same user (and `ps e`) reads
it. The etcd here has TLS and auth (test_etcd_security.py), so the agent reads the store only
if the password did reach it.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import yaml
from speaker_harness import Node, Speaker, free_port, netplan, wait_for, write_spec

from bgp import channel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "etcd"))
# secure_etcd: the fixture of an etcd with TLS and auth, shared with the etcd tests
from test_etcd_security import PASSWORD, secure_etcd, tls_flags  # noqa: E402, F401

MD5_PASSWORD = "tor secret=1/+"
SECRETS = {"NETPLAN_ETCD_PASSWORD": PASSWORD, "TOR_PASSWORD": MD5_PASSWORD}


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def test_exabgp_and_the_agent_hold_no_password(processes, secure_etcd,  # noqa: F811
                                               monkeypatch):
    node = Node("node-a", "127.0.0.2")
    spec = write_spec(processes.tmp / "s.yaml", [node],
                      peers=[("127.0.0.1", free_port("127.0.0.1"))])
    data = yaml.safe_load(spec.read_text())
    data["bgp"]["peers"][0]["passwordEnv"] = "TOR_PASSWORD"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    options = [*tls_flags(secure_etcd.tls), "--etcd-user", "netplan"]
    monkeypatch.setenv("NETPLAN_ETCD_PASSWORD", PASSWORD)
    netplan(*options, "allocate", "-f", str(spec), "--store", secure_etcd.url)

    speaker = Speaker(processes, spec, "node-a", secure_etcd.url, options=options,
                      env=SECRETS).start()
    # The agent read its lease from the etcd that needs the password, and handed it on.
    wait_for(lambda: speaker.status().get("announced") == ["10.244.0.0/24"],
             "node-a's prefix read by the agent", processes.logs)
    assert SECRETS.items() <= environ(speaker.proc.pid).items()  # the test gave them
    for name, pid in (("ExaBGP", speaker.exabgp_pid()), ("the agent", speaker.agent_pid())):
        env = environ(pid)
        leaked = [k for k, v in env.items() if k in SECRETS or v in SECRETS.values()]
        assert not leaked, f"{name} (pid {pid}) holds {leaked} in its environment"


def test_the_report_channel_brings_the_agent_its_secrets_first(tmp_path):
    listener = channel.Listener(str(tmp_path / "agent.sock"), lambda conn, report: None,
                                {"etcd_password": PASSWORD})
    try:
        assert stat.S_IMODE(Path(listener.path).stat().st_mode) == 0o600
        reporter = channel.Reporter(listener.path, on_broken=lambda: None)
        assert reporter.secrets == {"etcd_password": PASSWORD}
        reporter.close()
    finally:
        listener.close()
