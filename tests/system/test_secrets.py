"""A full scenario with known secrets, then every log of the stack is scanned
for them: passwords (also wrong ones), TOTP secrets and codes, recovery
codes, access, refresh and MFA tokens, push keys, message and email text."""

from __future__ import annotations

import json
import re
import time

import pyotp

from conftest import Client, Stack, eventually, known_to_chat, push_subscription, register, unique


def test_no_secret_reaches_any_log(stack: Stack):
    secrets: dict[str, str] = {}
    password = "Zebra-Quartz-Window-7781"
    wrong = "Wrong-Guess-Parsnip-4410"
    alice = register(stack, password=password)
    bob = register(stack, password=password)
    secrets |= {"password": password, "wrong password": wrong, "alice access": alice.access, "alice refresh": alice.refresh}
    secrets |= {"bob access": bob.access, "bob refresh": bob.refresh}

    c = alice.client()
    assert Client(stack.gateway).post("/api/auth/login", json={"login": alice.username, "password": wrong}).status_code == 401
    setup = c.post("/api/auth/mfa/totp/setup", json={"password": password}).json()
    totp = pyotp.TOTP(setup["secret"])
    secrets["totp secret"] = setup["secret"]
    code = totp.now()
    enabled = c.post("/api/auth/mfa/totp/enable", json={"code": code, "password": password})
    assert enabled.status_code == 200, enabled.text
    codes = enabled.json()["recoveryCodes"]
    secrets |= {f"recovery code {i}": rc for i, rc in enumerate(codes)}

    # MFA login with a recovery code (TOTP codes are only 6 digits, so they
    # are checked in log fields rather than as bare substrings below).
    first = Client(stack.gateway).post("/api/auth/login", json={"login": alice.username, "password": password}).json()
    secrets["mfa token"] = first["mfaToken"]
    wrong_code = Client(stack.gateway).post("/api/auth/login/mfa", json={"mfaToken": first["mfaToken"], "code": "000000"})
    assert wrong_code.status_code == 401
    tokens = Client(stack.gateway).post("/api/auth/login/mfa", json={"mfaToken": first["mfaToken"], "recoveryCode": codes[0]}).json()
    secrets |= {"mfa access": tokens["accessToken"], "mfa refresh": tokens["refreshToken"]}
    rotated = Client(stack.gateway).post("/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]}).json()
    secrets |= {"rotated access": rotated["accessToken"], "rotated refresh": rotated["refreshToken"]}

    # Messages over REST and WebSocket, a push subscription, an email digest.
    text = f"the vault code is {unique('v')}"
    ws_text = f"meet at {unique('dock')}"
    secrets |= {"message text": text, "socket message text": ws_text}
    assert bob.client().put(
        "/api/notifications/preferences", json={"push": True, "email": True, "emailDelaySeconds": 0, "mutedChatIds": []}
    ).status_code == 200
    # Digests go only to verified addresses: bob redeems his mailed link
    # (whose token must not reach a log either).
    mail_dir = stack.state / "mail" / "new"
    mailed = lambda: [m for p in mail_dir.glob("*") if f"{bob.username}@" in (t := p.read_text(errors="replace")) for m in re.findall(r"token=([A-Za-z0-9_-]{16,})", t)]
    candidates = eventually(mailed, timeout=30, what="bob's verification mail")
    # The HTML part may be quoted-printable (`token=3D…`): the text part's is the one.
    verified = [t for t in candidates if Client(stack.gateway).post("/api/auth/email/verify", json={"token": t}).status_code == 204]
    assert len(verified) == 1, candidates
    secrets["verification token"] = verified[0]
    time.sleep(2)  # notify-svc learns it from user.updated
    subscription = push_subscription()
    secrets["push auth key"] = subscription["keys"]["auth"]
    assert bob.client().post("/api/notifications/push-subscriptions", json=subscription).status_code == 201
    known_to_chat(stack, alice, bob)
    chat = alice.client().post("/api/chat", json={"userId": bob.id}).json()
    assert alice.client().post(f"/api/chat/{chat['id']}/messages", json={"content": text}).status_code == 201
    url = stack.gateway.replace("http://", "ws://") + "/ws"
    from websockets.sync.client import connect

    with connect(url, origin=stack.origin) as ws:  # browser-style first-frame auth
        ws.send(json.dumps({"type": "auth", "token": rotated["accessToken"]}))
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        ws.send(json.dumps({"type": "message.send", "chatId": chat["id"], "content": ws_text, "clientMsgId": unique()}))
        while json.loads(ws.recv(timeout=10))["type"] != "ack":
            pass
    eventually(lambda: len(bob.client().get("/api/notifications").json()["notifications"]) >= 2, what="bob's notifications")
    # The digest email is sent (it carries the message text) before we scan.
    eventually(lambda: any(text in p.read_text(errors="replace") for p in mail_dir.glob("*")), timeout=30, what="the digest email")

    # Password change and MFA disable with a TOTP code.
    new_password = "Lantern-Oboe-Granite-5532"
    secrets["new password"] = new_password
    me = Client(stack.gateway, token=rotated["accessToken"])
    assert me.post("/api/auth/password", json={"currentPassword": password, "newPassword": new_password}).status_code == 204
    eventually(lambda: totp.at(time.time()) != code, timeout=35, interval=1, what="the next TOTP step")
    late_code = totp.now()
    assert me.post("/api/auth/mfa/disable", json={"password": new_password, "code": late_code}).status_code == 204
    # Reuse of a spent refresh token (logged as a security event, without
    # the token); it revokes the whole session.
    assert Client(stack.gateway).post("/api/auth/refresh", json={"refreshToken": tokens["refreshToken"]}).status_code == 401
    time.sleep(1.5)  # let the last events be consumed and logged

    logs = stack.logs()
    names = [n for n in logs if n.split(".")[0] in ("auth-svc", "chat-svc-0", "notify-svc", "gateway", "gateway-access")]
    assert {"auth-svc.log", "chat-svc-0.log", "notify-svc.log", "gateway-access.log"} <= set(names), names
    total = 0
    for name in names:
        content = logs[name]
        total += len(content)
        for what, secret in secrets.items():
            assert secret not in content, f"{what} appears in {name}"
        for line in content.splitlines():
            if line.startswith("{"):
                entry = json.dumps(json.loads(line))
                for c in (code, late_code, "000000"):
                    assert f'"{c}"' not in entry and f"code={c}" not in entry, f"a TOTP code in {name}: {line}"
    assert total > 10_000, "the scenario logged almost nothing: is logging on?"
