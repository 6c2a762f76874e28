#!/usr/bin/env python3
"""Writes a valid labctl repository with one large file, for measuring the loader's memory
(BENCHMARKS.md, "Loading a large file"):

    benches/big_repo.py DIR MB [devices|reservations]

devices (default): DIR/devices/lab.yaml of about MB megabytes, each Device (a VM with a disk,
an interface and a service) followed by its DhcpReservation, plus the pools of repo-layout/.
reservations: DIR/dhcp/lab.yaml of DhcpReservations only (smaller documents, more of them).
"""
import os
import shutil
import sys

out, mb = sys.argv[1], float(sys.argv[2])
shape = sys.argv[3] if len(sys.argv) > 3 else "devices"
here = os.path.dirname(os.path.abspath(__file__))
shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)


def reservation(i, mac, ip):
    return f"""apiVersion: labctl.dev/v1
kind: DhcpReservation
metadata:
  name: host-{i}
spec:
  subnet: 10.0.0.0/8
  mac: "{mac}"
  ip: {ip}
  hostname: host-{i}.lab.example
---
"""


def device(i, mac, ip):
    return f"""apiVersion: labctl.dev/v1
kind: Device
metadata:
  name: host-{i}
  labels:
    role: platform
spec:
  type: vm
  pool: /homelab/compute/services
  description: Generated guest number {i}
  proxmox:
    node: pve-01
    vmid: {1000 + i}
  cores: 2
  memoryMiB: 4096
  disks:
    - name: scsi0
      storage: local-lvm
      sizeGiB: 32
  interfaces:
    - name: net0
      mac: "{mac}"
      ip: {ip}
      bridge: vmbr0
  services:
    - name: https
      port: 443
      protocol: https
---
"""


parts, size, i = [], 0, 0
while size < mb * 1e6:
    a, b = divmod(i, 250)
    ip = f"10.{a // 250}.{a % 250}.{b + 1}"
    mac = ":".join(["bc", "24"] + [f"{(i >> s) & 255:02x}" for s in (24, 16, 8, 0)])
    doc = reservation(i, mac, ip)
    if shape == "devices":
        doc = device(i, mac, ip) + doc
    parts.append(doc)
    size += len(doc)
    i += 1
if shape == "devices":
    os.makedirs(f"{out}/pools")
    shutil.copy(f"{here}/../repo-layout/pools/homelab.yaml", f"{out}/pools/")
    target = f"{out}/devices/lab.yaml"
else:
    target = f"{out}/dhcp/lab.yaml"
os.makedirs(os.path.dirname(target), exist_ok=True)
with open(target, "w") as f:
    f.write("".join(parts))
print(f"{target}: {i} {shape}, {size} bytes")
