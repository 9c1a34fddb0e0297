"""Hostile input against every service, directly and through the gateway:
operator objects, malformed bodies, forged tokens, other users' ids, foreign
origins, hostile WebSocket clients and spoofed client addresses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
import pyotp
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import PASSWORD, Client, SourceAddress, fresh_address, Stack, User, eventually, group, known_to_chat, push_subscription, register, unique

OPERATORS = [{"$ne": ""}, {"$gt": ""}, {"$regex": ".*"}, {"$where": "1"}, ["$ne", ""]]
ZERO_ID = "0" * 24


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict:
    alice, bob = register(stack), register(stack)
    chat = group(stack, alice, [bob], name="private plans")
    msg = alice.client().post(f"/api/chat/{chat['id']}/messages", json={"content": "secret plan"}).json()
    dm = alice.client().post("/api/chat", json={"userId": bob.id}).json()
    notes = eventually(lambda: bob.client().get("/api/notifications").json()["notifications"], what="bob's notification")
    sub = alice.client().post("/api/notifications/push-subscriptions", json=push_subscription())
    assert sub.status_code == 201, sub.text
    return {"alice": alice, "bob": bob, "chat": chat, "msg": msg, "dm": dm, "note": notes[0], "sub": sub.json()["id"]}


def json_endpoints(world: dict):
    """(service base attribute, method, path, a valid body) for every JSON body the API takes."""
    chat, msg = world["chat"]["id"], world["msg"]["id"]
    bob = world["bob"].id
    yield "auth", "POST", "/api/auth/register", {"username": unique(), "email": f"{unique()}@example.test", "password": PASSWORD, "displayName": "X"}
    yield "auth", "POST", "/api/auth/login", {"login": world["alice"].username, "password": PASSWORD}
    yield "auth", "POST", "/api/auth/login/mfa", {"mfaToken": "x", "code": "123456"}
    yield "auth", "POST", "/api/auth/refresh", {"refreshToken": "x"}
    yield "auth", "POST", "/api/auth/password", {"currentPassword": PASSWORD, "newPassword": PASSWORD + "x"}
    yield "auth", "PATCH", "/api/users/me", {"displayName": "A", "avatarUrl": "https://example.test/a.png", "bio": "b"}
    yield "auth", "POST", "/api/auth/mfa/totp/enable", {"code": "123456", "password": PASSWORD}
    yield "auth", "POST", "/api/auth/mfa/disable", {"password": PASSWORD, "code": "123456"}
    yield "auth", "POST", "/api/auth/mfa/recovery-codes", {"password": PASSWORD, "code": "123456"}
    yield "chat", "POST", "/api/chat", {"userId": bob}
    yield "chat", "POST", "/api/chat/group", {"name": "g", "memberIds": [bob]}
    yield "chat", "PATCH", f"/api/chat/{chat}", {"name": "n"}
    yield "chat", "POST", f"/api/chat/{chat}/members", {"userId": bob}
    yield "chat", "POST", f"/api/chat/{chat}/messages", {"content": "c", "clientMsgId": unique()}
    yield "chat", "PATCH", f"/api/chat/{chat}/messages/{msg}", {"content": "c"}
    yield "chat", "POST", f"/api/chat/{chat}/read", {"messageId": msg}
    yield "notify", "POST", "/api/notifications/push-subscriptions", push_subscription()
    yield "notify", "PUT", "/api/notifications/preferences", {"push": True, "email": True, "emailDelaySeconds": 60, "mutedChatIds": [chat]}


def poisoned(body: dict):
    """Every string field (also inside objects and arrays) replaced by each operator object."""
    for key, value in body.items():
        if isinstance(value, str):
            for op in OPERATORS:
                yield key, {**body, key: op}
        elif isinstance(value, dict):
            for inner, bad in poisoned(value):
                yield f"{key}.{inner}", {**body, key: bad}
        elif isinstance(value, list) and value and isinstance(value[0], str):
            for op in OPERATORS[:2]:
                yield f"{key}[0]", {**body, key: [op]}


def base_of(stack: Stack, service: str, via: str) -> str:
    return stack.gateway if via == "gateway" else getattr(stack, service)


@pytest.mark.parametrize("via", ["direct", "gateway"])
def test_operator_objects_in_every_string_field_are_refused(stack: Stack, world: dict, via: str):
    alice: User = world["alice"]
    tried = 0
    for service, method, path, body in json_endpoints(world):
        for field, bad in poisoned(body):
            # A fresh client address each time: the per-IP limits of register
            # and login would answer 429 before the body is even read.
            r = Client(base_of(stack, service, via), token=alice.access).request(method, path, json=bad)
            assert r.status_code in (400, 422), f"{method} {path} with {field}={bad[field.split('.')[0].split('[')[0]]!r}: {r.status_code} {r.text[:200]}"
            assert r.headers["content-type"].startswith("application/problem+json")
            tried += 1
    assert tried > 100
    # Operators in query strings and path ids are plain (wrong) strings.
    c = alice.client(base_of(stack, "auth", via))
    r = c.get("/api/users", params={"search[$ne]": "", "search": "zz-no-such-user"})
    assert r.status_code in (200, 400, 422) and (r.status_code != 200 or r.json() == [])
    for path in ("/api/users/%7B%22%24ne%22%3A%22%22%7D", "/api/chat/%7B%22%24gt%22%3A%22%22%7D", "/api/chat/%24where"):
        service = "auth" if "users" in path else "chat"
        assert alice.client(base_of(stack, service, via)).get(path).status_code in (400, 404)
    # Logging in with operators never logs anyone in.
    r = Client(base_of(stack, "auth", via)).post("/api/auth/login", json={"login": {"$ne": ""}, "password": {"$ne": ""}})
    assert r.status_code in (400, 422)


@pytest.mark.parametrize("via", ["direct", "gateway"])
def test_malformed_bodies_get_precise_errors(stack: Stack, world: dict, via: str):
    alice: User = world["alice"]
    for service, method, path, body in json_endpoints(world):
        c = Client(base_of(stack, service, via), token=alice.access)
        if path in ("/api/auth/register", "/api/auth/login"):
            c.mount("http://", SourceAddress(fresh_address()))  # 5 requests: stay under the per-IP limits
        unknown = c.request(method, path, json={**body, "isAdmin": True})
        assert unknown.status_code in (400, 422), f"unknown field: {method} {path}: {unknown.status_code}"
        utf8 = c.request(method, path, data=b'{"x": "\xff\xfe"}', headers={"content-type": "application/json"})
        assert utf8.status_code == 400, f"invalid UTF-8: {method} {path}: {utf8.status_code}"
        wrong_type = c.request(method, path, data=json.dumps(body), headers={"content-type": "text/plain"})
        assert wrong_type.status_code == 415, f"text/plain: {method} {path}: {wrong_type.status_code}"
        huge = c.request(method, path, data=b'{"a":"' + b"x" * (65 * 1024) + b'"}', headers={"content-type": "application/json"})
        assert huge.status_code == 413, f"65 KiB: {method} {path}: {huge.status_code}"
        not_object = c.request(method, path, json=[body])
        assert not_object.status_code in (400, 422)


CONTROL_NAMES = ["Eve\r\nX-Injected: yes", "Eve\n{\"level\":\"ERROR\",\"forged\":true}", "Eve\x00", "Eve\x1b[31mred", "Eve\u202etxt.exe"]


def test_control_characters_in_names_are_refused_and_never_reach_logs_raw(stack: Stack, world: dict):
    alice: User = world["alice"]
    for name in CONTROL_NAMES:
        r = alice.client().patch("/api/users/me", json={"displayName": name})
        assert r.status_code == 422, f"displayName {name!r}: {r.status_code} {r.text[:200]}"
        r = alice.client().patch(f"/api/chat/{world['chat']['id']}", json={"name": name})
        assert r.status_code == 422, f"chat name {name!r}: {r.status_code} {r.text[:200]}"
        name_user = unique()
        r = Client(stack.gateway).post(
            "/api/auth/register", json={"username": name_user, "email": f"{name_user}@example.test", "password": PASSWORD, "displayName": name}
        )
        assert r.status_code == 422, f"register displayName {name!r}: {r.status_code}"
    # Message text is the user's own plain text (multi-line is allowed); what
    # is logged of any request stays one JSON object per line.
    r = alice.client().post(f"/api/chat/{world['chat']['id']}/messages", json={"content": "line one\nline two\r\n{\"forged\":true}"})
    assert r.status_code == 201
    Client(stack.gateway).get("/api/chat/%0d%0aX-Forged:%20yes")
    for name in ("auth-svc", "chat-svc-0", "notify-svc"):
        for line in stack.log(name).splitlines():
            if line.strip():
                entry = json.loads(line)  # a forged line would not parse or would carry "forged"
                assert "forged" not in entry, line


# --- tokens -------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict, dict]:
    head, payload, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(head))), json.loads(base64.urlsafe_b64decode(pad(payload)))


def forged_tokens(stack: Stack, world: dict) -> dict[str, str]:
    alice: User = world["alice"]
    bob: User = world["bob"]
    head, claims = parts(alice.access)
    private = (stack.state / "keys" / "jwt-private.pem").read_bytes()
    public = (stack.state / "keys" / "jwt-public.pem").read_bytes()
    now = int(time.time())
    sign = lambda c, h=head: jwt.encode(c, private, algorithm="EdDSA", headers={"kid": h["kid"], "typ": h.get("typ", "JWT")})  # noqa: E731
    raw_head, raw_payload, raw_sig = alice.access.split(".")
    hs_head = b64(json.dumps({**head, "alg": "HS256"}).encode())
    hs_sig = b64(hmac.new(public, f"{hs_head}.{raw_payload}".encode(), hashlib.sha256).digest())
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    stranger = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    mfa_user = mfa_login_token(stack)
    return {
        "alg none": f"{b64(json.dumps({**head, 'alg': 'none'}).encode())}.{raw_payload}.",
        "alg none, no signature part": f"{b64(json.dumps({**head, 'alg': 'none'}).encode())}.{raw_payload}",
        "tampered payload": f"{raw_head}.{b64(json.dumps({**claims, 'sub': bob.id}).encode())}.{raw_sig}",
        "HS256 signed with the public key": f"{hs_head}.{raw_payload}.{hs_sig}",
        "unknown kid": jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": "no-such-key"}),
        "no kid": jwt.encode(claims, private, algorithm="EdDSA"),
        "another key, same kid": jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": head["kid"]}),
        "expired": sign({**claims, "iat": now - 3600, "nbf": now - 3600, "exp": now - 60}),
        "not yet valid": sign({**claims, "nbf": now + 600, "exp": now + 1200}),
        "wrong aud": sign({**claims, "aud": "someone-else"}),
        "wrong iss": sign({**claims, "iss": "https://evil.example"}),
        "refresh token": alice.refresh,
        "mfa token": mfa_user,
        "empty": "",
        "garbage": "not.a.token",
    }


def mfa_login_token(stack: Stack) -> str:
    user = register(stack)
    c = user.client()
    secret = c.post("/api/auth/mfa/totp/setup", json={"password": PASSWORD}).json()["secret"]
    assert c.post("/api/auth/mfa/totp/enable", json={"code": pyotp.TOTP(secret).now(), "password": PASSWORD}).status_code == 200
    r = Client(stack.gateway).post("/api/auth/login", json={"login": user.username, "password": PASSWORD})
    assert r.json()["mfaRequired"] is True
    return r.json()["mfaToken"]


def test_forged_and_misused_tokens_are_refused_by_every_service(stack: Stack, world: dict):
    tokens = forged_tokens(stack, world)
    targets = [
        (stack.auth, "/api/users/me"),
        (stack.chat, "/api/chat"),
        (stack.notify, "/api/notifications"),
        (stack.gateway, "/api/users/me"),
        (stack.gateway, f"/api/chat/{world['chat']['id']}/messages"),
        (stack.gateway, "/api/notifications/preferences"),
    ]
    for base, path in targets:
        assert Client(base, token=world["alice"].access).get(path).status_code == 200, f"the genuine token fails on {base}{path}"
        for what, token in tokens.items():
            r = Client(base).get(path, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, f"{what} on {base}{path}: {r.status_code} {r.text[:200]}"
            assert r.headers["content-type"].startswith("application/problem+json")
        for scheme in ("Basic", "bearer-ish", "Token"):
            r = Client(base).get(path, headers={"Authorization": f"{scheme} {world['alice'].access}"})
            assert r.status_code == 401, f"scheme {scheme} on {base}{path}"
    # The WebSocket refuses them too, in the header and in the first frame.
    url = stack.chat.replace("http://", "ws://") + "/ws"
    for what, token in tokens.items():
        if not token:
            continue
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers={"Authorization": f"Bearer {token}"}, origin=stack.origin, open_timeout=10).close()
        assert refused.value.response.status_code == 401, what
        with connect(url, origin=stack.origin, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "auth", "token": token}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    frame = json.loads(ws.recv(timeout=10))
                    assert frame["type"] != "ready", what
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, (what, closed.value.rcvd)


# --- other users' ids -------------------------------------------------------------


def test_a_second_user_reaches_nothing_of_the_first(stack: Stack, world: dict):
    """IDOR sweep: Mallory, a registered user, tries every id of Alice's."""
    alice: User = world["alice"]
    mallory = register(stack)
    known_to_chat(stack, mallory, alice)
    chat_id, msg_id, dm_id = world["chat"]["id"], world["msg"]["id"], world["dm"]["id"]
    sessions = alice.client().get("/api/auth/sessions").json()
    m = mallory.client()
    attempts = []
    for cid in (chat_id, dm_id):
        attempts += [
            ("GET", f"/api/chat/{cid}", None),
            ("PATCH", f"/api/chat/{cid}", {"name": "owned"}),
            ("POST", f"/api/chat/{cid}/members", {"userId": mallory.id}),
            ("DELETE", f"/api/chat/{cid}/members/{alice.id}", None),
            ("DELETE", f"/api/chat/{cid}/members/{mallory.id}", None),
            ("GET", f"/api/chat/{cid}/messages", None),
            ("POST", f"/api/chat/{cid}/messages", {"content": "hi"}),
            ("PATCH", f"/api/chat/{cid}/messages/{msg_id}", {"content": "x"}),
            ("DELETE", f"/api/chat/{cid}/messages/{msg_id}", None),
            ("POST", f"/api/chat/{cid}/read", {"messageId": msg_id}),
        ]
    attempts += [("DELETE", f"/api/auth/sessions/{s['id']}", None) for s in sessions]
    attempts += [("POST", f"/api/notifications/{world['note']['id']}/read", None)]
    attempts += [("DELETE", f"/api/notifications/push-subscriptions/{world['sub']}", None)]
    for method, path, body in attempts:
        r = m.request(method, path, json=body)
        assert r.status_code == 404, f"{method} {path}: {r.status_code} {r.text[:200]}"
    # Nothing changed for Alice.
    assert alice.client().get("/api/users/me").status_code == 200
    chat = alice.client().get(f"/api/chat/{chat_id}").json()
    assert chat["name"] == "private plans" and mallory.id not in [u["id"] for u in chat["members"]]
    page = alice.client().get(f"/api/chat/{chat_id}/messages").json()["messages"]
    assert all(not msg["deleted"] and msg["content"] != "x" for msg in page)
    assert world["bob"].client().get("/api/notifications").json()["notifications"][0]["readAt"] is None
    # Public profiles never carry private fields.
    profile = m.get(f"/api/users/{alice.id}").json()
    assert set(profile) <= {"id", "username", "displayName", "avatarUrl", "bio"}, profile
    found = m.get("/api/users", params={"search": alice.username}).json()
    assert found and all("email" not in p and "mfaEnabled" not in p for p in found)
    # Mallory's socket never sees Alice's chats.
    with mallory.socket() as ws:
        ws.send(json.dumps({"type": "typing", "chatId": chat_id, "state": "start"}))
        ws.send(json.dumps({"type": "message.send", "chatId": chat_id, "content": "in", "clientMsgId": unique()}))
        ws.send(json.dumps({"type": "read", "chatId": chat_id, "messageId": msg_id}))
        alice.client().post(f"/api/chat/{chat_id}/messages", json={"content": "not for mallory"})
        seen = []
        try:
            while True:
                seen.append(json.loads(ws.recv(timeout=1.5)))
        except TimeoutError:
            pass
    assert all(f.get("chatId") != chat_id or f["type"] == "error" for f in seen), seen
    assert any(f["type"] == "error" for f in seen), seen
    assert all("not for mallory" not in json.dumps(f) for f in seen)


# --- browsers ---------------------------------------------------------------------


@pytest.mark.parametrize("service", ["auth", "chat", "notify", "gateway"])
def test_cors_only_for_the_allowed_origins(stack: Stack, world: dict, service: str):
    base = getattr(stack, service)
    path = {"auth": "/api/users/me", "chat": "/api/chat", "notify": "/api/notifications", "gateway": "/api/chat"}[service]
    c = Client(base)
    for origin in ("https://evil.example", "http://127.0.0.1:18080.evil.example", "null"):
        pre = c.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
        assert "access-control-allow-origin" not in pre.headers, (origin, dict(pre.headers))
        assert "access-control-allow-credentials" not in pre.headers
        simple = Client(base, token=world["alice"].access).get(path, headers={"Origin": origin})
        assert "access-control-allow-origin" not in simple.headers
    pre = c.options(path, headers={"Origin": stack.origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert pre.headers.get("access-control-allow-origin") == stack.origin
    assert "*" not in pre.headers.get("access-control-allow-origin", "")


def test_hostile_websocket_clients(stack: Stack, world: dict):
    alice: User = world["alice"]
    for base in (stack.chat, stack.gateway):
        url = base.replace("http://", "ws://") + "/ws"
        # A foreign Origin is refused at the upgrade.
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers={"Authorization": f"Bearer {alice.access}"}, origin="https://evil.example", open_timeout=10)
        assert refused.value.response.status_code == 403
        # No credentials: nothing but a close after junk or silence.
        with connect(url, origin=stack.origin, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "message.send", "chatId": world["chat"]["id"], "content": "x", "clientMsgId": "y"}))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    assert json.loads(ws.recv(timeout=15))["type"] == "error"
            assert closed.value.rcvd.code == 1008
        # Junk frames get error frames; the socket stays usable.
        with alice.socket(base) as ws:
            for junk in ("not json", "[]", "{}", '{"type": 5}', '{"type": "nope"}', '{"type": "message.send"}', "\u0000\u202e", '{"type":"typing","chatId":{"$ne":""},"state":"start"}'):
                ws.send(junk)
            ws.send(b"\x00\x01binary")
            ws.send(json.dumps({"type": "ping"}))
            frames = []
            while not frames or frames[-1]["type"] != "pong":
                frames.append(json.loads(ws.recv(timeout=10)))
            assert sum(f["type"] == "error" for f in frames) >= 8, frames
        # A frame over 64 KiB closes the socket with 1009.
        with alice.socket(base, max_size=None) as ws:
            ws.send("x" * (65 * 1024))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1009
        # A flood is cut off, and the server stays up for everyone else.
        with alice.socket(base) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(5000):
                    ws.send('{"type":"ping"}')
                while True:
                    ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value
        with alice.socket(base) as ws:
            ws.send('{"type":"ping"}')
            assert json.loads(ws.recv(timeout=10))["type"] == "pong"


# --- rate limits and client addresses ---------------------------------------------------


def test_per_ip_login_limit_holds_through_the_gateway_despite_spoofed_forwarded_for(stack: Stack):
    c = Client(stack.gateway)
    statuses = []
    for i in range(12):
        r = c.post("/api/auth/login", json={"login": unique(), "password": "Wrong-password-1"}, headers={"X-Forwarded-For": f"10.0.0.{i}", "X-Real-IP": f"10.1.0.{i}"})
        statuses.append(r.status_code)
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429], statuses
    # Another client address has its own budget, through the gateway and directly.
    assert Client(stack.gateway).post("/api/auth/login", json={"login": unique(), "password": "Wrong-password-1"}).status_code == 401
    direct = Client(stack.auth)
    for i in range(10):
        assert direct.post("/api/auth/login", json={"login": unique(), "password": "x"}, headers={"X-Forwarded-For": f"10.2.0.{i}"}).status_code in (401, 422)
    assert direct.post("/api/auth/login", json={"login": unique(), "password": "x"}, headers={"X-Forwarded-For": "10.2.0.99"}).status_code == 429


def test_per_account_limit_holds_across_client_addresses(stack: Stack):
    victim = register(stack)
    statuses = [Client(stack.gateway).post("/api/auth/login", json={"login": victim.username, "password": f"Wrong-{i}-pass"}).status_code for i in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429, statuses
    # Even the right password waits until the window passes: no oracle.
    r = Client(stack.gateway).post("/api/auth/login", json={"login": victim.username, "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
