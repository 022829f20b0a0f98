"""Booted instances: each EC2 instance of the testbed as a systemd-nspawn machine.

A Debian image built once by debootstrap, a fresh overlay per boot, a network namespace with
a veth /30 to the host, the security groups as nftables rules, an IMDS and a wheelhouse of
the project's own; cloud-init runs the rendered user data. Part of infra.local: imports
infra.aws and the local testbed's own modules, never infra.local.testbed (no circle).
"""
