#!/usr/bin/env python3
"""What a user and a message leave behind: Redis keys and bytes per user,
MongoDB documents and indexes per message, RabbitMQ bindings per connected
user. The figures behind the sizing in docs/operations.md.

Starts the stack of bench/fanout_instances.py (.dev/fanbench, one chat-svc
instance), runs `loadgen fanout` (default: 50 one-to-one chats, 10 messages
a second for 10 s), and while its sockets are still open reads RabbitMQ's
bindings; afterwards it reads every Redis key of the stack and every
MongoDB collection of the three services.

  bench/footprint.py [--members 2] [--groups 50] [--rate 10] [--duration 10]

A benchmark: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout_instances import N, NAME, ROOT, dev, stack_env  # noqa: E402

import pymongo  # noqa: E402


def rabbit_bindings() -> collections.Counter:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_bindings", "-p", NAME, "source_name", "destination_name", "routing_key"],
        capture_output=True, text=True, check=False,
    ).stdout
    kinds: collections.Counter = collections.Counter()
    for row in out.splitlines():
        parts = row.split("\t")
        if len(parts) == 3 and "chat-svc.fanout." in parts[1]:
            kinds["per-user (r.<id>)" if parts[2].startswith("r.") else "static"] += 1
    return kinds


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--members", type=int, default=2)
    p.add_argument("--groups", type=int, default=50)
    p.add_argument("--rate", type=int, default=10)
    p.add_argument("--duration", type=int, default=10)
    args = p.parse_args()
    env = stack_env(1)
    loadgen = ROOT / "target" / "debug" / "loadgen"
    subprocess.run([str(ROOT / "dev"), "down"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", env["DEV_STATE"]], check=True)
    dev("up", env)
    users = args.members * args.groups
    try:
        bindings: collections.Counter = collections.Counter()

        def sample() -> None:
            time.sleep(args.duration / 2 + 3)
            bindings.update(rabbit_bindings())

        sampler = threading.Thread(target=sample)
        sampler.start()
        out = subprocess.run(
            [str(loadgen), "fanout", "--auth", f"http://127.0.0.1:{N}8081", "--chat", f"http://127.0.0.1:{N}8080",
             "--members", str(args.members), "--groups", str(args.groups), "--rate", str(args.rate),
             "--duration", str(args.duration)],
            env=env, capture_output=True, text=True, check=True,
        ).stdout
        sampler.join()
        delivered = next((l.strip() for l in out.splitlines() if "deliveries" in l and "lost" in l), "")
        time.sleep(2)

        port = f"{N}6379"
        keys = subprocess.run(["redis-cli", "-p", port, "--scan"],
                              capture_output=True, text=True, check=True).stdout.split()
        sizes = subprocess.run(["redis-cli", "-p", port], input="".join(f"MEMORY USAGE {k}\n" for k in keys),
                               capture_output=True, text=True, check=True).stdout.split()
        kinds: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
        for name, size in zip(keys, sizes):
            parts = name.split(":")
            # The kind: the key without its ids (the parts after the prefix
            # that are not long hex or numbers).
            words = [w for w in parts[1:] if not (len(w) >= 12 and all(c in "0123456789abcdef-" for c in w)) and not w.isdigit()]
            kind = ":".join(words[:2]) or parts[0]
            kinds[kind][0] += 1
            kinds[kind][1] += int(size) if size.isdigit() else 0
        info = subprocess.run(["redis-cli", "-p", port, "info", "memory"], capture_output=True, text=True, check=True).stdout
        used = next((l.split(":")[1].strip() for l in info.splitlines() if l.startswith("used_memory:")), "?")

        mongo = pymongo.MongoClient(f"mongodb://127.0.0.1:{27017 + 100 * N}")
        messages = 0
        collections_seen = []
        for db_name in mongo.list_database_names():
            if db_name in ("admin", "local", "config"):
                continue
            db = mongo[db_name]
            for coll in sorted(db.list_collection_names()):
                count = db[coll].estimated_document_count()
                indexes = len(list(db[coll].list_indexes()))
                if coll == "messages":
                    messages = count
                collections_seen.append((db_name, coll, count, indexes))
    finally:
        dev("down", env)

    print(f"# {users} users in {args.groups} chats of {args.members}, {args.rate} msg/s for {args.duration} s, "
          f"one chat-svc, dev profile, SecantusDB Python server; {delivered}")
    print(f"RabbitMQ bindings of the fan-out queue while {users} sockets were open: {dict(bindings)}")
    print(f"Redis: used_memory {used} bytes; by key kind (keys, bytes of MEMORY USAGE):")
    for kind, (count, size) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        print(f"  {kind:40} {count:6} keys {size:9} bytes  {size / users:8.0f} bytes per user")
    print(f"MongoDB ({messages} messages stored): collection, documents, per message, indexes")
    for db_name, coll, count, indexes in collections_seen:
        per = f"{count / messages:.2f}" if messages else "-"
        print(f"  {db_name}.{coll:28} {count:7} {per:>6} {indexes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
