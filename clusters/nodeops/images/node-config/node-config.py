#!/usr/bin/env python3
"""Corral node-config: write kubelet arguments where RKE2 or k3s reads them, then restart it.

Run by system-upgrade-controller as the upgrade container of a Plan, with the host's root
mounted at /host:

    node-config --kubelet-arg=max-pods=250 [--kubelet-arg=name=value ...]
                [--host-root /host] [--distribution rke2|k3s] [--no-restart]

It writes one drop-in, /etc/rancher/<rke2|k3s>/config.yaml.d/90-corral-kubelet.yaml, holding
``kubelet-arg+:`` (appended to any kubelet-arg the node's own config sets, so other settings are
left alone). The same arguments twice change nothing and restart nothing; no arguments remove the
drop-in. The service (rke2-server/rke2-agent, k3s/k3s-agent, whichever is active) is restarted
through ``chroot <host> systemctl restart`` unless --no-restart is given (or NODE_CONFIG_NO_RESTART=1).
Only the standard library: the image is a plain Python base.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DROP_IN = "90-corral-kubelet.yaml"
UNITS = {"rke2": ("rke2-server", "rke2-agent"), "k3s": ("k3s", "k3s-agent")}
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
HEADER = "# Written by Corral's node-config image; replaced on the next kubelet-arguments rollout.\n"


class ConfigError(Exception):
    pass


def parse_kubelet_args(values: list[str]) -> list[str]:
    """``["max-pods=250"]`` checked: a flag name, "=", a one-line value."""
    out = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not NAME.match(name):
            raise ConfigError(f"--kubelet-arg must be name=value with a kubelet flag name, not {value!r}")
        if any(c in rest for c in "\n\r\0"):
            raise ConfigError(f"the value of {name} must be one line")
        out.append(f"{name}={rest}")
    return sorted(out)  # one order, so the same arguments always write the same file


def detect(host: Path, wanted: str = "") -> str:
    """Which distribution the host runs: rke2 or k3s (from its config directory or binary)."""
    if wanted:
        if wanted not in UNITS:
            raise ConfigError(f"unknown distribution {wanted!r} (rke2 or k3s)")
        return wanted
    for name in ("rke2", "k3s"):
        if (host / "etc/rancher" / name).is_dir() or (host / "usr/local/bin" / name).exists() \
                or (host / "usr/bin" / name).exists():
            return name
    raise ConfigError(f"neither RKE2 nor k3s is installed under {host} (no etc/rancher/rke2 or etc/rancher/k3s)")


def render(args: list[str]) -> str:
    # JSON strings are valid YAML double-quoted scalars.
    return HEADER + "kubelet-arg+:\n" + "".join(f"  - {json.dumps(a)}\n" for a in args)


def write(host: Path, distribution: str, args: list[str]) -> bool:
    """Write (or remove) the drop-in; True when the file changed."""
    directory = host / "etc/rancher" / distribution / "config.yaml.d"
    path = directory / DROP_IN
    if not args:
        if path.exists():
            path.unlink()
            return True
        return False
    text = render(args)
    if path.exists() and path.read_text() == text:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".corral-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def restart(host: Path, distribution: str) -> str:
    """Restart whichever of the distribution's services is active on the host; returns its name."""
    for unit in UNITS[distribution]:
        probe = subprocess.run(["chroot", str(host), "systemctl", "is-active", "--quiet", unit], check=False)
        if probe.returncode == 0:
            done = subprocess.run(["chroot", str(host), "systemctl", "restart", unit], check=False)
            if done.returncode != 0:
                raise ConfigError(f"systemctl restart {unit} failed (exit {done.returncode})")
            return unit
    raise ConfigError(f"none of {', '.join(UNITS[distribution])} is active on the host")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="node-config", description=__doc__.splitlines()[1])
    parser.add_argument("--kubelet-arg", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--host-root", default=os.environ.get("NODE_CONFIG_HOST_ROOT", "/host"))
    parser.add_argument("--distribution", default="", choices=["", "rke2", "k3s"])
    parser.add_argument("--no-restart", action="store_true",
                        default=os.environ.get("NODE_CONFIG_NO_RESTART", "") not in ("", "0", "false"))
    options = parser.parse_args(argv)
    host = Path(options.host_root)
    try:
        args = parse_kubelet_args(options.kubelet_arg)
        distribution = detect(host, options.distribution)
        changed = write(host, distribution, args)
        where = f"/etc/rancher/{distribution}/config.yaml.d/{DROP_IN}"
        if not changed:
            print(f"node-config: {where} already holds {args or 'no arguments'}; nothing to do")
            return 0
        print(f"node-config: wrote {where}: {args or 'removed'}")
        if options.no_restart:
            print("node-config: not restarting (--no-restart)")
        else:
            print(f"node-config: restarted {restart(host, distribution)}")
    except (ConfigError, OSError) as exc:
        print(f"node-config: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
