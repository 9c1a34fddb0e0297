#!/usr/bin/env python3
"""Fan-out cost per chat-svc instance, for 1, 2 and 4 instances.

Starts a stack of its own (.dev/fanbench: gateway on 38080, its own Redis,
MongoDB-wire server and RabbitMQ virtual host) for each instance count, runs
`loadgen fanout` through the gateway (which spreads the sockets over the
instances, least connections), and reads every chat-svc instance's
/metrics before and after:

- events its fan-out queue consumed, per message sent;
- and, from the load generator (which reads /proc for every chat-svc
  pid), the chat-svc CPU per message and per delivery (the services'
  process_cpu_seconds_total counts whole seconds only).

  bench/fanout_instances.py [--instances 1,2,4] [--members 2] [--groups 40]
                            [--rate 40] [--duration 10] [--label routed]

Uses the binaries already built in target/<profile> (DEV_NO_BUILD=1), so a
build of another commit can be measured by building it first. A benchmark:
it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N = 3  # port prefix of the stack: 38080-38083, Redis 36379, MongoDB 27317
NAME = "fanbench"


def stack_env(instances: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MONGODB_URI", "AMQP_URL", "SMTP_URL")}
    env.update(
        DEV_STATE=str(ROOT / ".dev" / NAME),
        GATEWAY_PORT=f"{N}8080",
        AUTH_PORT=f"{N}8081",
        CHAT_PORT=f"{N}8082",
        NOTIFY_PORT=f"{N}8083",
        REDIS_PORT=f"{N}6379",
        MONGO_PORT=str(27017 + 100 * N),
        SMTP_PORT=f"{N}2525",
        AMQP_VHOST=NAME,
        CHAT_INSTANCES=str(instances),
        DEV_NO_BUILD="1",
    )
    env.setdefault("DEV_PROFILE", "dev")
    return env


def dev(command: str, env: dict[str, str]) -> None:
    subprocess.run([str(ROOT / "dev"), command], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {"consumed": 0.0, "published": 0.0}
    for line in text.splitlines():
        value = line.rsplit(" ", 1)[-1]
        if line.startswith("events_consumed_total{") and "chat-svc.fanout." in line:
            out["consumed"] += float(value)
        elif line.startswith("events_published_total{") and 'type="chat.message.created"' in line:
            out["published"] += float(value)
    return out


def chat_ports(instances: int) -> list[int]:
    return [int(f"{N}8082") + 10 * i for i in range(instances)]


def run(instances: int, args: argparse.Namespace, loadgen: Path) -> dict:
    env = stack_env(instances)
    subprocess.run([str(ROOT / "dev"), "down"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", env["DEV_STATE"]], check=True)
    dev("up", env)
    try:
        ports = chat_ports(instances)
        before = [metrics(p) for p in ports]
        out = subprocess.run(
            [str(loadgen), "fanout", "--auth", f"http://127.0.0.1:{N}8081", "--chat", f"http://127.0.0.1:{N}8080",
             "--members", str(args.members), "--groups", str(args.groups), "--rate", str(args.rate),
             "--duration", str(args.duration), "--pids", ",".join(pids(env, instances))],
            env=env, capture_output=True, text=True, check=True,
        ).stdout
        time.sleep(1)
        after = [metrics(p) for p in ports]
    finally:
        dev("down", env)
    messages = sum(a["published"] - b["published"] for a, b in zip(after, before))
    consumed = [a["consumed"] - b["consumed"] for a, b in zip(after, before)]
    cpu_match = re.search(r"chat-svc CPU ([0-9.]+) s", out)
    cpu = float(cpu_match.group(1)) if cpu_match else 0.0
    delivered = re.search(r"(\d+) of (\d+) deliveries", out)
    deliveries = int(delivered.group(1)) if delivered else 0
    sent = deliveries / args.members
    lost = re.search(r"lost[^0-9]*(\d+)", out)
    return {
        "instances": instances,
        "messages (all, with warm-up)": messages,
        "consumed per instance per message": [round(c / messages, 2) for c in consumed] if messages else [],
        "consumed, all instances, per message": round(sum(consumed) / messages, 2) if messages else None,
        "chat-svc cpu s": cpu,
        "cpu ms per measured message": round(1000 * cpu / sent, 2) if sent else None,
        "cpu us per delivery": round(1e6 * cpu / deliveries, 1) if deliveries else None,
        "loadgen": " ".join(l.strip() for l in out.splitlines() if "deliver" in l.lower() or "lost" in l.lower())[:400],
        "lost": int(lost.group(1)) if lost else None,
    }


def pids(env: dict[str, str], instances: int) -> list[str]:
    run_dir = Path(env["DEV_STATE"]) / "run"
    found = []
    for i in range(instances):
        f = run_dir / f"chat-svc-{i}.pid"
        if f.exists():
            found.append(f.read_text().strip())
    return found


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--instances", default="1,2,4")
    p.add_argument("--members", type=int, default=2)
    p.add_argument("--groups", type=int, default=40)
    p.add_argument("--rate", type=int, default=40)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--label", default="")
    args = p.parse_args()
    profile = "release" if os.environ.get("DEV_PROFILE") == "release" else "debug"
    loadgen = ROOT / "target" / profile / "loadgen"
    if not loadgen.exists():
        print(f"build the load generator first: cargo build -p loadgen ({loadgen})", file=sys.stderr)
        return 2
    print(f"# {args.label} {args.groups} chats of {args.members} at {args.rate} msg/s for {args.duration} s, "
          f"profile {profile}, SecantusDB Python server, through the gateway")
    for n in (int(x) for x in args.instances.split(",")):
        print(run(n, args, loadgen), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
