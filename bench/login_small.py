# A first small harness (the Rust load generator is a separate issue): login
# latency and throughput against auth-svc on 8081. Needs the stack started with
# LOGIN_PER_MINUTE_PER_IP raised, e.g. LOGIN_PER_MINUTE_PER_IP=100000 ./dev up.
# Run: .venv/bin/python bench/login_small.py
import time, requests, concurrent.futures as cf, secrets, statistics
base = "http://127.0.0.1:8081"
name = "bench_" + secrets.token_hex(3)
pw = "violet harbor lantern " + secrets.token_hex(4)
r = requests.post(base + "/api/auth/register", json={"username": name, "email": name + "@example.com", "password": pw})
assert r.status_code == 201, r.text
s = requests.Session()
lat = []
for _ in range(20):
    t = time.perf_counter(); r = s.post(base + "/api/auth/login", json={"login": name, "password": pw}); lat.append(time.perf_counter() - t)
    assert r.status_code == 200, r.text
print("sequential login p50 %.1f ms" % (statistics.median(lat) * 1000))
def worker(n):
    sess = requests.Session(); ok = 0; limited = 0
    for _ in range(n):
        r = sess.post(base + "/api/auth/login", json={"login": name, "password": pw})
        ok += r.status_code == 200; limited += r.status_code == 429
    return ok, limited
N, C = 40, 8
t = time.perf_counter()
with cf.ThreadPoolExecutor(C) as ex:
    res = list(ex.map(worker, [N] * C))
el = time.perf_counter() - t
ok = sum(r[0] for r in res); lim = sum(r[1] for r in res)
print(f"{C} clients x {N}: {ok} ok, {lim} 429, {ok/el:.1f} logins/s over {el:.1f}s")
