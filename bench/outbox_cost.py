# What an atomic outbox costs per message on a MongoDB-wire server, two ways
# (docs/benchmarks.md, "the message and its event"):
#   embedded:    one insert of the message carrying its event in an `outbox`
#                array, then the relay's $pull once published;
#   transaction: a multi-document transaction inserting the message and an
#                outbox record, then the relay's delete of the record.
# Each is timed as the POST sees it (the write before the answer) and with
# the relay's clean-up. Baseline: a bare insert of the same message, without
# any event, in the same run, interleaved with the other two.
# Run: .venv/bin/python bench/outbox_cost.py [mongodb://127.0.0.1:27017] [N]
import statistics
import sys
import time
import uuid

from pymongo import MongoClient

uri = sys.argv[1] if len(sys.argv) > 1 else "mongodb://127.0.0.1:27017"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
client = MongoClient(uri)
db = client["bench_outbox_" + uuid.uuid4().hex[:8]]
messages, outbox = db["messages"], db["outbox"]
messages.insert_one({"_id": "warm"})
outbox.insert_one({"_id": "warm"})


def message():
    return {"_id": uuid.uuid4().hex, "chatId": "c1", "senderId": "u1",
            "content": "x" * 120, "clientMsgId": uuid.uuid4().hex,
            "createdAt": time.time()}


def event(msg):
    return {"_id": uuid.uuid4().hex, "aggregate": msg["chatId"], "seq": 1,
            "exchange": "chat.events", "routingKey": "chat.message.created",
            "body": "{" + "y" * 600 + "}", "createdAt": time.time()}


def bare():
    t = time.perf_counter()
    messages.insert_one(message())
    return time.perf_counter() - t, 0.0


def embedded():
    m = message()
    e = event(m)
    m["outbox"] = [e]
    t = time.perf_counter()
    messages.insert_one(m)
    post = time.perf_counter() - t
    messages.update_one({"_id": m["_id"]}, {"$pull": {"outbox": {"_id": e["_id"]}}})
    return post, time.perf_counter() - t


def transaction():
    m = message()
    e = event(m)
    t = time.perf_counter()
    with client.start_session() as s:
        with s.start_transaction():
            messages.insert_one(m, session=s)
            outbox.insert_one(e, session=s)
    post = time.perf_counter() - t
    outbox.delete_one({"_id": e["_id"]})
    return post, time.perf_counter() - t


def ms(xs):
    xs = sorted(xs)
    return "p50 %.2f ms, p99 %.2f ms" % (statistics.median(xs) * 1000, xs[int(len(xs) * 0.99) - 1] * 1000)


try:
    variants = [("bare insert (baseline)", bare), ("embedded", embedded), ("transaction", transaction)]
    results = {name: [] for name, _ in variants}
    for _ in range(20):
        for _, f in variants:
            f()
    # Interleaved, so that the server's background work falls on all three alike.
    for _ in range(n):
        for name, f in variants:
            results[name].append(f())
    print("server: %s, %d writes each" % (uri, n))
    for name, runs in results.items():
        print("%-24s before the answer: %s; with the relay's clean-up: %s"
              % (name, ms([r[0] for r in runs]), ms([r[1] for r in runs])))
finally:
    client.drop_database(db.name)
