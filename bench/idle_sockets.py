# Run against the dev stack: REGISTER_PER_HOUR_PER_IP=100000 ./dev up
# then: .venv/bin/python bench/idle_sockets.py [sockets]
"""Memory per idle authenticated WebSocket: opens N sockets straight to
chat-svc instance 0 (not through the gateway), waits for every `ready`,
and reads the instance's resident memory from /proc before and after."""
import asyncio, pathlib, resource, secrets, sys, time
import requests, websockets

AUTH = "http://127.0.0.1:8080"
CHAT = "ws://127.0.0.1:8082/ws"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
USERS = 20

def rss_kib(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit("no VmRSS")

def chat_pid():
    run = pathlib.Path(__file__).resolve().parent.parent / ".dev" / "run"
    for name in ("chat-svc-0.pid", "chat-svc.pid"):
        p = run / name
        if p.exists():
            return int(p.read_text().strip())
    raise SystemExit("chat-svc pid file not found in .dev/run")

def register(i, tag):
    name = f"idle{tag}{i}"
    r = requests.post(AUTH + "/api/auth/register", json={"username": name, "email": f"{name}@example.com",
                      "password": "violet harbor lantern " + tag})
    r.raise_for_status()
    return r.json()["accessToken"]

async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, N + 1000)), hard))
    tag = secrets.token_hex(3)
    tokens = [register(i, tag) for i in range(USERS)]
    pid = chat_pid()
    time.sleep(1)
    before = rss_kib(pid)
    sockets = []
    for k in range(N):
        ws = await websockets.connect(CHAT, additional_headers={"Authorization": f"Bearer {tokens[k % USERS]}"},
                                      ping_interval=None)
        await ws.recv()  # ready
        sockets.append(ws)
        if k % 500 == 499:
            print(f"  {k + 1} open", flush=True)
    await asyncio.sleep(3)
    after = rss_kib(pid)
    print(f"{N} idle sockets: chat-svc RSS {before} KiB -> {after} KiB, "
          f"{(after - before) / N:.1f} KiB per socket")
    for ws in sockets:
        await ws.close()

asyncio.run(main())
