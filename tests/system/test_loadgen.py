"""The load generator still works: its scenarios at a tiny scale against the
private stack, directly and through the gateway. Only what it counts is
asserted (no lost or duplicated delivery, no failed request, a figure for
each measurement), never a timing: benchmarks do not gate CI."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import ROOT

LOADGEN = ROOT / "target" / "debug" / "loadgen"


@pytest.fixture(scope="module")
def loadgen(stack):
    subprocess.run(["cargo", "build", "-q", "-p", "loadgen"], cwd=ROOT, check=True, timeout=900)

    def run(*args: str, chat: str | None = None) -> str:
        env = {
            "PATH": subprocess.os.environ["PATH"],
            "LOADGEN_AUTH": stack.auth,
            "LOADGEN_CHAT": chat or stack.chat,
            "LOADGEN_RUN": str(stack.state / "run"),
        }
        done = subprocess.run([str(LOADGEN), *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"loadgen {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    return run


def deliveries(out: str) -> tuple[int, int, int, int, int]:
    m = re.search(r"(\d+) of (\d+) deliveries, lost (\d+), duplicated (\d+), failed posts (\d+)", out)
    assert m, out
    return tuple(int(g) for g in m.groups())  # type: ignore[return-value]


@pytest.mark.parametrize("via", ["direct", "gateway"])
def test_fanout_counts_every_delivery(stack, loadgen, via):
    out = loadgen(
        "fanout", "--members", "4", "--groups", "2", "--rate", "8", "--duration", "2",
        chat=stack.gateway if via == "gateway" else stack.chat,
    )
    got, expected, lost, dup, failed = deliveries(out)
    assert expected == 16 * 4, out
    assert (got, lost, dup, failed) == (expected, 0, 0, 0), out


def test_reconnect_storm_resumes_without_loss(loadgen):
    out = loadgen(
        "reconnect", "--clients", "6", "--members", "3", "--window", "1", "--rate", "6", "--duration", "3",
    )
    got, expected, lost, dup, failed = deliveries(out)
    assert (got, lost, dup, failed) == (expected, 0, 0, 0), out
    assert re.search(r"reconnect storm: 6 sockets reconnected and resumed over 1 s \(0 failed\)", out), out
    assert "frames repeated by a resume (already delivered before the reconnect): 0" in out, out


def test_reads_and_idle_sockets_report_their_figures(loadgen):
    out = loadgen("reads", "--chats", "2", "--concurrency", "2", "--duration", "1")
    assert re.search(r"req/s .*; 0 errors", out), out
    assert "MongoDB commands per request 0.000" in out, "a warm read went to MongoDB:\n" + out
    out = loadgen("idle", "--sockets", "20")
    assert re.search(r"20 authenticated sockets .* KiB per socket", out, re.S), out


def test_abuse_counts_checks_within_the_limit(loadgen):
    out = loadgen("abuse", "--clients", "12", "--concurrency", "20")
    m = re.search(r"12 concurrent wrong logins against one account: (\d+) checked", out)
    assert m and 1 <= int(m.group(1)) <= 10, out
    assert re.search(r"bystander's login during 20 concurrent .*\[5x 200\]", out), out
    flood = re.search(r"the flood's answers: (.*)", out)
    assert flood and "error" not in flood.group(1) and "timeout" not in flood.group(1), out
