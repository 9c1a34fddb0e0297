"""Security headers on every status code each service and the gateway produce.

Each case makes the service answer with one status for real (no test
routes): the headers come from the shared middleware for the services and
from deploy/*.conf for the gateway's own answers. 500 cannot be caused from
outside a healthy service; shared/tests/http.rs asserts it on a handler that
fails, and 503 is asserted in test_faults.py with MongoDB stopped.
"""

from __future__ import annotations

import pytest
import requests

from conftest import PASSWORD, Client, Stack, User, group, push_subscription, register, unique

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
COMMON = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


def assert_secure(r: requests.Response, csp: str = API_CSP) -> None:
    where = f"{r.request.method} {r.url} -> {r.status_code}"
    for name, value in COMMON.items():
        assert r.headers.get(name) == value, f"{where}: {name} is {r.headers.get(name)!r}"
    assert r.headers.get("content-security-policy") == csp, f"{where}: CSP {r.headers.get('content-security-policy')!r}"
    server = r.headers.get("server", "")
    assert not any(ch.isdigit() for ch in server), f"{where}: version banner {server!r}"
    if r.status_code >= 400 and r.content:
        assert r.headers["content-type"].startswith("application/problem+json"), f"{where}: {r.headers['content-type']}"
        assert r.json()["status"] == r.status_code
    if r.status_code == 429:
        assert int(r.headers["retry-after"]) > 0, where


@pytest.fixture(scope="module")
def people(stack: Stack) -> dict:
    alice, bob, carol = register(stack), register(stack), register(stack)
    chat = group(stack, alice, [bob, carol])
    return {"alice": alice, "bob": bob, "carol": carol, "chat": chat}


def cases(stack: Stack, people: dict, base: str, service: str):
    """(expected status, response) pairs for one service reached at `base`."""
    alice: User = people["alice"]
    bob: User = people["bob"]
    chat_id = people["chat"]["id"]
    anon = Client(base)
    me = alice.client(base)
    big = b'{"x":"' + b"a" * (70 * 1024) + b'"}'
    json_h = {"content-type": "application/json"}
    if service == "auth":
        name = unique()
        body = {"username": name, "email": f"{name}@example.test", "password": PASSWORD}
        fresh = Client(base)
        yield 200, anon.get("/.well-known/jwks.json")
        created = fresh.post("/api/auth/register", json=body)
        yield 201, created
        yield 409, fresh.post("/api/auth/register", json=body)
        yield 204, Client(base, token=created.json()["accessToken"]).post("/api/auth/logout")
        yield 400, anon.post("/api/auth/login", data=b'{"login": ', headers=json_h)
        yield 401, anon.get("/api/users/me")
        yield 404, me.get(f"/api/users/{'0' * 24}")
        yield 405, anon.delete("/api/auth/register")
        yield 413, anon.post("/api/auth/login", data=big, headers=json_h)
        yield 415, anon.post("/api/auth/login", data="login=a", headers={"content-type": "text/plain"})
        yield 422, anon.post("/api/auth/register", json={"username": "x", "email": "no", "password": "a"})
        limited = Client(base)
        for _ in range(12):
            last = limited.post("/api/auth/login", json={"login": unique(), "password": "wrong-password-1"})
            if last.status_code == 429:
                break
        yield 429, last
    elif service == "chat":
        bob_c = bob.client(base)
        msg = me.post(f"/api/chat/{chat_id}/messages", json={"content": "hello"})
        yield 200, me.get("/api/chat")
        yield 201, msg
        yield 204, bob_c.post(f"/api/chat/{chat_id}/read", json={"messageId": msg.json()["id"]})
        yield 400, me.post(f"/api/chat/{chat_id}/messages", data=b"{", headers=json_h)
        yield 401, anon.get("/api/chat")
        yield 403, bob_c.patch(f"/api/chat/{chat_id}", json={"name": "mine now"})
        yield 404, me.get(f"/api/chat/{'0' * 24}")
        yield 405, me.put("/api/chat")
        gone = me.post(f"/api/chat/{chat_id}/messages", json={"content": "to delete"}).json()
        me.delete(f"/api/chat/{chat_id}/messages/{gone['id']}")
        yield 409, me.patch(f"/api/chat/{chat_id}/messages/{gone['id']}", json={"content": "again"})
        yield 413, me.post(f"/api/chat/{chat_id}/messages", data=big, headers=json_h)
        yield 415, me.post(f"/api/chat/{chat_id}/messages", data="hi", headers={"content-type": "text/plain"})
        yield 422, me.post(f"/api/chat/{chat_id}/messages", json={"content": "   "})
        spammer = people["carol"].client(base)
        for i in range(40):
            last = spammer.post(f"/api/chat/{chat_id}/messages", json={"content": f"spam {i}"})
            if last.status_code == 429:
                break
        yield 429, last
    else:
        sub = me.post("/api/notifications/push-subscriptions", json=push_subscription())
        yield 200, me.get("/api/notifications")
        yield 201, sub
        yield 204, me.delete(f"/api/notifications/push-subscriptions/{sub.json()['id']}")
        yield 400, me.put("/api/notifications/preferences", data=b"[", headers=json_h)
        yield 401, anon.get("/api/notifications")
        yield 404, me.post(f"/api/notifications/{'0' * 24}/read")
        yield 405, me.delete("/api/notifications")
        yield 413, me.put("/api/notifications/preferences", data=big, headers=json_h)
        yield 415, me.put("/api/notifications/preferences", data="x", headers={"content-type": "text/plain"})
        yield 422, me.put("/api/notifications/preferences", json={"push": True, "email": True, "emailDelaySeconds": -1, "mutedChatIds": []})


@pytest.mark.parametrize("service", ["auth", "chat", "notify"])
@pytest.mark.parametrize("via", ["direct", "gateway"])
def test_every_status_carries_the_security_headers(stack: Stack, people: dict, service: str, via: str):
    base = stack.gateway if via == "gateway" else {"auth": stack.auth, "chat": stack.chat, "notify": stack.notify}[service]
    seen = []
    for expected, response in cases(stack, people, base, service):
        assert response.status_code == expected, f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}"
        assert_secure(response)
        seen.append(expected)
    assert sorted(seen) == STATUSES[service], seen


STATUSES = {
    "auth": [200, 201, 204, 400, 401, 404, 405, 409, 413, 415, 422, 429],
    "chat": [200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429],
    "notify": [200, 201, 204, 400, 401, 404, 405, 413, 415, 422],
}


def test_private_responses_are_not_cached(stack: Stack, people: dict):
    alice: User = people["alice"]
    for base, path in ((stack.auth, "/api/users/me"), (stack.chat, "/api/chat"), (stack.notify, "/api/notifications")):
        r = alice.client(base).get(path)
        assert r.status_code == 200
        assert "no-store" in r.headers.get("cache-control", ""), f"{path}: {r.headers.get('cache-control')!r}"


WEB_CSP_FORBIDDEN = ("'unsafe-inline'", "'unsafe-eval'", "*")


def test_gateway_own_answers_carry_the_headers(stack: Stack):
    g = Client(stack.gateway)
    page = g.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    csp = page.headers["content-security-policy"]
    assert all(bad not in csp for bad in WEB_CSP_FORBIDDEN), csp
    assert_secure(page, csp=csp)
    asset = g.get("/app.css")
    assert asset.status_code == 200
    assert_secure(asset, csp=csp)
    # The gateway's own errors are problem documents with the API headers.
    assert_secure(g.get("/api/nothing-here"))
    too_big = g.post("/api/chat", data=b"a" * (2 * 1024 * 1024), headers={"content-type": "application/json"})
    assert too_big.status_code == 413
    assert_secure(too_big)
    not_allowed = g.post("/index.html", data=b"x")
    assert not_allowed.status_code == 405
    assert_secure(not_allowed)
    # A request nginx itself refuses as malformed.
    import socket

    with socket.create_connection(("127.0.0.1", int(stack.gateway.rsplit(":", 1)[1]))) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        answer = raw.recv(65536).decode(errors="replace")
    head = answer.split("\r\n\r\n")[0].lower()
    assert head.startswith("http/1.1 400"), head
    for name, value in COMMON.items():
        assert f"{name}: {value}".lower() in head, (name, head)


def test_the_gateway_keeps_a_clients_request_id_and_replaces_a_malformed_one(stack: Stack, people: dict):
    alice: User = people["alice"]
    g = alice.client(stack.gateway)
    for path in ("/api/users/me", "/api/chat", "/api/notifications"):
        kept = g.get(path, headers={"X-Request-Id": "client-trace_0042"})
        assert kept.status_code == 200, path
        assert kept.headers["x-request-id"] == "client-trace_0042", f"{path}: {kept.headers.get('x-request-id')}"
        for bad in ("has spaces in it", "x" * 65, "semi;colon"):
            r = g.get(path, headers={"X-Request-Id": bad})
            fresh = r.headers["x-request-id"]
            assert fresh != bad and fresh and len(fresh) <= 64, f"{path}: {bad!r} -> {fresh!r}"


def test_the_gateway_serves_each_services_openapi_document(stack: Stack):
    """What integrators generate clients from, with the gateway's headers."""
    owns = {"auth-svc": "/api/auth/login", "chat-svc": "/api/chat", "notify-svc": "/api/notifications"}
    for service, path in owns.items():
        r = requests.get(f"{stack.gateway}/api-docs/{service}.json", timeout=10)
        assert r.status_code == 200, f"{service}: {r.status_code}"
        assert r.headers["content-type"].startswith("application/json"), r.headers["content-type"]
        doc = r.json()
        assert doc["openapi"].startswith("3.1"), doc["openapi"]
        assert path in doc["paths"], f"{service}: {sorted(doc['paths'])[:5]}"
        assert_secure(r)
    assert requests.get(f"{stack.gateway}/api-docs/nobody.json", timeout=10).status_code == 404
