# Needs REGISTER_PER_HOUR_PER_IP raised: REGISTER_PER_HOUR_PER_IP=100000 ./dev up
# Run: .venv/bin/python bench/fanout_small.py
"""Small harness: delivery latency to every member of a 50-member group,
messages posted at a steady rate through the gateway (open loop)."""
import asyncio, json, secrets, statistics, time, sys
import requests, websockets

BASE = "http://127.0.0.1:8080"
N, RATE, SECONDS = 50, 10, 10

def register(i, tag):
    name = f"fb{tag}{i}"
    r = requests.post(BASE + "/api/auth/register", json={"username": name, "email": f"{name}@example.com",
                      "password": "violet harbor lantern " + tag})
    r.raise_for_status()
    b = r.json(); return b["user"]["id"], b["accessToken"]

async def main():
    tag = secrets.token_hex(3)
    users = [register(i, tag) for i in range(N)]
    time.sleep(2)
    owner_id, owner_tok = users[0]
    r = requests.post(BASE + "/api/chat/group", headers={"Authorization": f"Bearer {owner_tok}"},
                      json={"name": "bench", "memberIds": [u for u, _ in users[1:]]})
    r.raise_for_status(); chat = r.json()["id"]
    sent = {}
    received = []
    async def listen(tok):
        async with websockets.connect(BASE.replace("http", "ws") + "/ws", max_size=2**20,
                                      additional_headers={"Authorization": f"Bearer {tok}", "Origin": BASE}) as ws:
            await ws.recv()
            end = time.monotonic() + SECONDS + 5
            while time.monotonic() < end:
                try:
                    f = json.loads(await asyncio.wait_for(ws.recv(), timeout=end - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if f.get("type") == "message.created":
                    received.append((f["message"]["content"], time.monotonic()))
    listeners = [asyncio.create_task(listen(t)) for _, t in users]
    await asyncio.sleep(2)
    sess = requests.Session()
    start = time.monotonic()
    loop = asyncio.get_running_loop()
    for k in range(RATE * SECONDS):
        intended = start + k / RATE
        await asyncio.sleep(max(0, intended - time.monotonic()))
        content = f"m{k}"
        sent[content] = intended
        tok = users[k % N][1]  # rotate senders: the per-user send limit is 30 per 10 s
        await loop.run_in_executor(None, lambda c=content, t=tok: sess.post(BASE + f"/api/chat/{chat}/messages",
                                   headers={"Authorization": f"Bearer {t}"}, json={"content": c}).raise_for_status())
    await asyncio.gather(*listeners)
    lat = sorted((t - sent[c]) * 1000 for c, t in received if c in sent)
    expected = len(sent) * N
    print(f"{N} members, {len(sent)} messages at {RATE}/s: {len(received)} deliveries of {expected} expected")
    print(f"latency from intended send: p50 {statistics.median(lat):.1f} ms, p99 {lat[int(len(lat)*0.99)-1]:.1f} ms, max {lat[-1]:.1f} ms")

asyncio.run(main())
