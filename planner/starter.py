"""`netplan init`: a commented starter spec for each preset."""

from __future__ import annotations

from planner.spec import PRESETS

_TEMPLATE = """\
# netplan spec: one cluster's address plan and BGP topology.
# Check it with `netplan plan -f netplan.yaml`, apply it with `netplan allocate -f netplan.yaml`.
cluster: demo                  # [a-z0-9-], at most 63 characters, unique in the store
preset: {preset}               # flannel: 10.244.0.0/16, /24 per node; calico: 192.168.0.0/16, /26

pools:                         # pod address pools; every node gets one CIDR from each
  - name: pods-v4
    cidr: {cidr}           # or `auto`: the first conflict-free of the presets and RFC 1918 space
    nodeMaskSize: {mask}             # each node's CIDR: /{mask} = {per_node} addresses
  # - name: pods-v6            # dual-stack: add an IPv6 pool (at most 16 bits wider than its mask)
  #   cidr: fd00:10:244::/56
  #   nodeMaskSize: 64

services:
  cidr: 10.96.0.0/12           # kubernetes service IP = .1, cluster DNS = .10; omit to choose one

reserved: []                   # ranges inside pools that no node may get
avoid: []                      # networks used elsewhere (hosts, VPC, VPN): nothing may overlap them
  # - 10.0.0.0/16

nodes:
  - name: node-a
    address: 10.0.0.11         # the node's own address: BGP router id and peering address
    labels: {{rack: r1}}
  - name: node-b
    address: 10.0.0.12
    labels: {{rack: r1}}
  - name: node-c
    address: 10.0.0.13
    labels: {{rack: r2}}

bgp:
  asNumber: 64512
  topology: full-mesh          # full-mesh | route-reflector | none | auto
  # routeReflectors:
  #   selector: {{role: rr}}
  # peers:
  #   - address: 10.0.0.254
  #     asNumber: 65001
  #     nodeSelector: {{rack: r1}}
  #     passwordEnv: TOR_PASSWORD
"""


def starter_spec(preset: str) -> str:
    p = PRESETS[preset]
    return _TEMPLATE.format(preset=preset, cidr=str(p.cidr), mask=p.node_mask,
                            per_node=1 << (32 - p.node_mask))
