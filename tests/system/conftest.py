"""The system tests' view of the private stack that `./dev system` starts.

The stack is the real one (nginx gateway, auth-svc, chat-svc, notify-svc,
Redis, the MongoDB-wire server, RabbitMQ, the SMTP sink) in its own folder,
ports and RabbitMQ virtual host, so the tests may stop and kill its parts
without touching the dev stack. `Stack.up()` brings back whatever is down.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Correct-Horse-Battery-42"


def env_port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class Stack:
    def __init__(self) -> None:
        self.state = Path(os.environ.get("DEV_STATE", ROOT / ".dev"))
        self.gateway = f"http://127.0.0.1:{env_port('GATEWAY_PORT', 8080)}"
        self.auth = f"http://127.0.0.1:{env_port('AUTH_PORT', 8081)}"
        self.chat = f"http://127.0.0.1:{env_port('CHAT_PORT', 8082)}"
        self.notify = f"http://127.0.0.1:{env_port('NOTIFY_PORT', 8083)}"
        self.vhost = os.environ.get("AMQP_VHOST", "/")
        self.services = {"auth-svc": self.auth, "chat-svc-0": self.chat, "notify-svc": self.notify}
        self.origin = self.gateway

    # processes ---------------------------------------------------------

    def pid(self, name: str) -> int | None:
        try:
            pid = int((self.state / "run" / f"{name}.pid").read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def kill(self, name: str, sig: int = signal.SIGKILL, wait: float = 15.0) -> None:
        """Sends `sig` and waits until the process is gone."""
        pid = self.pid(name)
        assert pid, f"{name} is not running"
        os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"{name} ({pid}) did not exit within {wait} s of signal {sig}")
        (self.state / "run" / f"{name}.pid").unlink(missing_ok=True)

    def up(self) -> None:
        """Starts whatever part of the stack is down and waits until it is ready."""
        env = dict(os.environ, DEV_NO_BUILD="1")
        for key in ("REDIS_URL", "MONGODB_URI", "AMQP_URL", "SMTP_URL"):
            env.pop(key, None)
        subprocess.run([str(ROOT / "dev"), "up"], env=env, check=True, capture_output=True, timeout=300)

    def rabbitmqctl(self, *args: str) -> str:
        return subprocess.run(
            ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=120
        ).stdout

    def log(self, name: str) -> str:
        path = self.state / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> dict[str, str]:
        return {p.name: p.read_text(errors="replace") for p in (self.state / "logs").glob("*.log")}

    def ready(self, base: str) -> requests.Response:
        return requests.get(f"{base}/health/ready", timeout=10)


_addresses = itertools.count(1)


def fresh_address() -> str:
    """A loopback source address of its own, so per-IP limits see a new client."""
    n = next(_addresses) + (os.getpid() % 50) * 1000
    return f"127.{10 + n // (254 * 256) % 200}.{n // 254 % 256}.{n % 254 + 1}"


class SourceAddress(HTTPAdapter):
    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


class Client(requests.Session):
    """An HTTP client bound to its own loopback address, with a base URL."""

    def __init__(self, base: str, address: str | None = None, token: str | None = None) -> None:
        super().__init__()
        self.base = base
        self.address = address or fresh_address()
        adapter = SourceAddress(self.address)
        self.mount("http://", adapter)
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method, url, *args, **kwargs):  # noqa: D401 - requests signature
        kwargs.setdefault("timeout", 30)
        if url.startswith("/"):
            url = self.base + url
        return super().request(method, url, *args, **kwargs)


class User:
    def __init__(self, stack: Stack, body: dict, password: str, address: str) -> None:
        self.stack = stack
        self.id = body["user"]["id"]
        self.username = body["user"]["username"]
        self.email = body["user"]["email"]
        self.password = password
        self.access = body["accessToken"]
        self.refresh = body["refreshToken"]
        self.address = address

    def client(self, base: str | None = None) -> Client:
        return Client(base or self.stack.gateway, self.address, self.access)

    def socket(self, base: str | None = None, **kwargs):
        url = (base or self.stack.gateway).replace("http://", "ws://") + "/ws"
        ws = connect(
            url,
            additional_headers={"Authorization": f"Bearer {self.access}"},
            origin=self.stack.origin,
            open_timeout=10,
            **kwargs,
        )
        ready = json.loads(ws.recv(timeout=10))
        assert ready["type"] == "ready", ready
        return ws


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def register(stack: Stack, name: str | None = None, password: str = PASSWORD, base: str | None = None) -> User:
    name = name or unique()
    client = Client(base or stack.gateway)
    r = client.post("/api/auth/register", json={"username": name, "email": f"{name}@example.test", "password": password})
    assert r.status_code == 201, r.text
    return User(stack, r.json(), password, client.address)


def eventually(check, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    """Polls `check` until it returns a truthy value; returns that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, AssertionError, KeyError) as e:  # not there yet
            last = e
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")


def known_to_chat(stack: Stack, viewer: User, *users: User) -> None:
    """Waits until chat-svc has learned `users` from auth-svc's events."""
    client = viewer.client(stack.chat)
    for user in users:
        eventually(lambda u=user: client.post("/api/chat", json={"userId": u.id}).status_code in (200, 201), what=f"chat-svc knows {user.username}")


def group(stack: Stack, admin: User, members: list[User], name: str = "team") -> dict:
    known_to_chat(stack, admin, *members)
    r = admin.client().post("/api/chat/group", json={"name": name, "memberIds": [m.id for m in members]})
    assert r.status_code == 201, r.text
    return r.json()


def push_subscription(endpoint: str | None = None) -> dict:
    """A browser-like PushSubscription: a real P-256 key and a 16-byte secret
    (the dev stack allows loopback endpoints; nothing listens on port 9)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    return {
        "endpoint": endpoint or f"http://127.0.0.1:9/push/{unique()}",
        "keys": {"p256dh": b64(point), "auth": b64(os.urandom(16))},
    }


@pytest.fixture(scope="session")
def stack() -> Stack:
    s = Stack()
    for base in (s.auth, s.chat, s.notify, s.gateway):
        assert s.ready(base).status_code == 200, f"{base} is not ready: start the stack with ./dev system"
    return s


def pytest_collection_modifyitems(items):
    """The failure scenarios stop and kill parts of the stack: they run last."""
    items.sort(key=lambda item: item.get_closest_marker("faults") is not None)


def pytest_configure(config):
    config.addinivalue_line("markers", "faults: stops or kills parts of the stack; runs last")
