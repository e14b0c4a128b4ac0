#!/usr/bin/env python3
"""Measures what the Redis capacity model in docs/operations.md is built from, on a
real redis-server started here on loopback, and checks the model's pub/sub fan-out part
against a simulation.

Measured (each figure printed with how it was obtained):
  - memory per live jti / user / tenant / family / session entry: `MEMORY USAGE` of one
    key, and the `used_memory` growth per key over N keys (includes Redis's dictionary
    and expiry overhead: the figure to size with);
  - Redis CPU per uncached check (the CHECK script) and per revocation write + publish
    (MARK, BUMP), from `INFO commandstats` usec_per_call under load;
  - pub/sub fan-out cost per subscriber: MARK's usec_per_call with 0 and with S
    subscribers, the slope per subscriber; bytes each subscriber receives per event.
Simulated: one process with 200 subscribers on loopback receives W events; the model's
prediction (CPU from the slope, bytes from the per-event size) is compared with what
was simulated, as a ratio.

The scripts are read from crates/core/src/revocation/redis/scripts.rs, so the figures
are those of the Lua tokengate runs. Bounded: about 30 s. No Python packages needed.

Usage: scripts/capacity.py [--json FILE]
"""

import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "crates/core/src/revocation/redis/scripts.rs")
PREFIX = "tg:"
NS = "idp"
N_KEYS = 20_000
SUBSCRIBERS_SLOPE = 50
SUBSCRIBERS_SIM = 200
EVENTS_SIM = 2_000


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Conn:
    """A minimal RESP2 client: enough for commands, pipelines and SUBSCRIBE."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError(f"bad reply {line!r}")

    def cmd(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.reply()

    def pipeline(self, commands, batch=500):
        for i in range(0, len(commands), batch):
            part = commands[i : i + batch]
            self.sock.sendall(b"".join(self.encode(*c) for c in part))
            for _ in part:
                self.reply()


def lua(name):
    with open(SCRIPTS) as f:
        text = f.read()
    m = re.search(r"pub static " + name + r": .*?r#\"(.*?)\"#", text, re.DOTALL)
    if not m:
        sys.exit(f"script {name} not found in {SCRIPTS}")
    return m.group(1)


def info(c, section):
    text = c.cmd("INFO", section)
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def usec_per_call(c, command):
    stats = info(c, "commandstats").get(f"cmdstat_{command}", "")
    m = re.search(r"calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)", stats)
    return (int(m.group(1)), float(m.group(3))) if m else (0, 0.0)


def key(kind, ident):
    return f"{PREFIX}{kind}@{NS}:{ident}"


def record(sub):
    return json.dumps(
        {"reason": "logout", "at": int(time.time() * 1000), "actor": f"{NS}:{sub}"},
        separators=(",", ":"),
    )


def event(kind, ident):
    return json.dumps(
        {"v": 2, "kind": kind, "id": f"{NS}:{ident}", "exp": int(time.time()) + 900},
        separators=(",", ":"),
    )


def measure_memory(c, sha):
    """Per kind: MEMORY USAGE of one key and used_memory growth per key."""
    rows = {}
    channel = PREFIX + "events"
    shapes = {
        "jti": lambda i: str(uuid.uuid4()),
        "family": lambda i: str(uuid.uuid4()),
        "session": lambda i: str(uuid.uuid4()),
        "user": lambda i: f"user-{i:08d}",
        "tenant": lambda i: f"tenant-{i:06d}",
    }
    ttls = {"jti": 900, "family": 30 * 86400, "session": 86400}
    for kind, ident in shapes.items():
        c.cmd("FLUSHALL")
        before = int(info(c, "memory")["used_memory"])
        cmds, sample = [], None
        for i in range(N_KEYS):
            ident_i = ident(i)
            k = key(kind, ident_i)
            sample = sample or k
            if kind in ttls:
                cmds.append(("EVALSHA", sha["MARK"], 1, k, record(ident_i), ttls[kind], channel, event(kind, ident_i)))
            else:
                cmds.append(
                    (
                        "EVALSHA",
                        sha["BUMP"],
                        1,
                        k,
                        int(time.time() * 1000),
                        0,
                        channel,
                        json.dumps({"v": 2, "kind": kind, "id": f"{NS}:{ident_i}"})[:-1],
                    )
                )
        c.pipeline(cmds)
        after = int(info(c, "memory")["used_memory"])
        rows[kind] = {
            "memory_usage_bytes": c.cmd("MEMORY", "USAGE", sample, "SAMPLES", "0"),
            "used_memory_per_key_bytes": round((after - before) / N_KEYS, 1),
            "key_example": sample,
        }
    return rows


def uid(tag, i):
    """A UUID-shaped id (36 characters, as most IdPs' jti, family and session ids)."""
    return f"{i:08d}-{tag}000-4000-8000-{i:012d}"


def populate(c, sha, n):
    """n live jti revocations and n/10 user cut-offs, as a store in use holds them."""
    c.cmd("FLUSHALL")
    channel = PREFIX + "events"
    cmds = []
    for i in range(n):
        j = uid("a", i)
        cmds.append(("EVALSHA", sha["MARK"], 1, key("jti", j), record(j), 900, channel, event("jti", j)))
        if i % 10 == 0:
            cmds.append(
                ("EVALSHA", sha["BUMP"], 1, key("user", f"user-{i:08d}"), int(time.time() * 1000), 0, channel, '{"v":2')
            )
    c.pipeline(cmds)


def check_keys(i, revoked, legacy_read=True):
    """The keys of one uncached check: 9 with legacy_keys: read (the default), 5 off."""
    j = uid("a" if revoked else "b", i)
    current = [
        key("jti", j),
        key("user", f"user-{i:08d}"),
        key("tenant", f"tenant-{i % 97:06d}"),
        key("family", uid("f", i)),
    ]
    legacy = [PREFIX + k[len(PREFIX) :].replace(f"@{NS}:", ":", 1) for k in current]
    return current + (legacy if legacy_read else []) + [key("session", uid("5", i))]


def cpu_seconds(c):
    cpu = info(c, "cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def measure_cpu(port, c, sha, n=20_000):
    populate(c, sha, n)
    c.cmd("CONFIG", "RESETSTAT")
    cmds = []
    for i in range(n):
        keys = check_keys(i, revoked=(i % 2 == 0))
        cmds.append(("EVALSHA", sha["CHECK"], len(keys), *keys, PREFIX))
    request_bytes = sum(len(Conn.encode(*x)) for x in cmds) / len(cmds)
    t0, cpu0 = time.time(), cpu_seconds(c)
    c.pipeline(cmds)
    elapsed, check_cpu = time.time() - t0, cpu_seconds(c) - cpu0
    calls, check_us = usec_per_call(c, "evalsha")
    # A Cluster cannot run the script (its keys hash to different slots): one EXISTS or
    # HMGET per key instead, each a command of its own (here on one node, pipelined).
    cluster = []
    for i in range(n):
        keys = check_keys(i, revoked=(i % 2 == 0), legacy_read=False)
        for k in keys:
            if "@" in k and k.split("@")[0].endswith(("user", "tenant")):
                cluster.append(("HMGET", k, "ver", "before"))
            else:
                cluster.append(("EXISTS", k))
    cpu0 = cpu_seconds(c)
    c.pipeline(cluster)
    cluster_cpu = cpu_seconds(c) - cpu0
    # reply size of one check
    raw = Conn(port)
    raw.sock.sendall(Conn.encode(*cmds[0]))
    time.sleep(0.05)
    reply_bytes = len(raw.sock.recv(1 << 16))
    raw.sock.close()

    c.cmd("CONFIG", "RESETSTAT")
    channel = PREFIX + "events"
    writes = [
        ("EVALSHA", sha["MARK"], 1, key("jti", f"w{i}"), record(f"w{i}"), 900, channel, event("jti", f"w{i}"))
        for i in range(n)
    ]
    c.pipeline(writes)
    _, mark_us = usec_per_call(c, "evalsha")
    write_bytes = sum(len(Conn.encode(*x)) for x in writes) / len(writes)
    c.cmd("CONFIG", "RESETSTAT")
    bumps = [
        (
            "EVALSHA",
            sha["BUMP"],
            1,
            key("user", f"b{i}"),
            int(time.time() * 1000),
            0,
            channel,
            json.dumps({"v": 2, "kind": "user", "id": f"{NS}:b{i}"})[:-1],
        )
        for i in range(n)
    ]
    c.pipeline(bumps)
    _, bump_us = usec_per_call(c, "evalsha")
    return {
        "check_usec_per_call": check_us,
        "check_redis_cpu_usec": round(check_cpu * 1e6 / n, 2),
        "check_calls": calls,
        "cluster_check_commands": 5,
        "cluster_check_redis_cpu_usec_one_node_pipelined": round(cluster_cpu * 1e6 / n, 2),
        "check_request_bytes": round(request_bytes),
        "check_reply_bytes": reply_bytes,
        "checks_per_second_one_client_pipelined": round(n / elapsed),
        "mark_usec_per_call_no_subscriber": mark_us,
        "bump_usec_per_call_no_subscriber": bump_us,
        "write_request_bytes": round(write_bytes),
    }


class Subscribers:
    """count subscribers on one selector thread, counting messages and bytes."""

    def __init__(self, port, count, channel):
        self.sel = selectors.DefaultSelector()
        self.socks = []
        self.bytes = 0
        self.messages = 0
        self.stop = False
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(Conn.encode("SUBSCRIBE", channel))
            self.socks.append(s)
        # wait for every subscription confirmation
        for s in self.socks:
            buf = b""
            while buf.count(b"\r\n") < 6:
                buf += s.recv(4096)
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
        self.marker = b"$7\r\nmessage\r\n"
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            for k, _ in self.sel.select(timeout=0.1):
                try:
                    data = k.fileobj.recv(1 << 16)
                except BlockingIOError:
                    continue
                self.bytes += len(data)
                self.messages += data.count(self.marker)

    def close(self):
        self.stop = True
        self.thread.join()
        for s in self.socks:
            s.close()


def mark_cost_with(port, c, sha, subscribers, n):
    channel = PREFIX + "events"
    subs = Subscribers(port, subscribers, channel) if subscribers else None
    c.cmd("CONFIG", "RESETSTAT")
    cpu0 = float(info(c, "cpu")["used_cpu_user"]) + float(info(c, "cpu")["used_cpu_sys"])
    writes = [
        (
            "EVALSHA",
            sha["MARK"],
            1,
            key("jti", f"s{subscribers}-{i}"),
            record(f"s{i}"),
            900,
            channel,
            event("jti", f"s{subscribers}-{i}"),
        )
        for i in range(n)
    ]
    t0 = time.time()
    c.pipeline(writes, batch=50)
    expected = n * subscribers
    deadline = time.time() + 20
    while subs and subs.messages < expected and time.time() < deadline:
        time.sleep(0.01)
    elapsed = time.time() - t0
    cpu1 = float(info(c, "cpu")["used_cpu_user"]) + float(info(c, "cpu")["used_cpu_sys"])
    _, us = usec_per_call(c, "evalsha")
    out = {
        "subscribers": subscribers,
        "events": n,
        "mark_usec_per_call": us,
        "redis_cpu_usec_per_event": round((cpu1 - cpu0) * 1e6 / n, 2),
        "elapsed_seconds": round(elapsed, 3),
    }
    if subs:
        out["messages_received"] = subs.messages
        out["bytes_received"] = subs.bytes
        subs.close()
    return out


def main():
    redis = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="tokengate-capacity-")
    proc = subprocess.Popen(
        [
            redis,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tmp,
            "--logfile",
            os.path.join(tmp, "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                c = Conn(port)
                c.cmd("PING")
                break
            except OSError:
                time.sleep(0.02)
        else:
            sys.exit("redis-server did not start")
        sha = {name: c.cmd("SCRIPT", "LOAD", lua(name)) for name in ("CHECK", "MARK", "BUMP")}
        result = {"redis_version": info(c, "server")["redis_version"]}
        result["memory"] = measure_memory(c, sha)
        result["cpu"] = measure_cpu(port, c, sha)
        c.cmd("FLUSHALL")

        # Median of three runs each: the machine is shared, single runs are noisy.
        def median_run(subscribers):
            runs = [mark_cost_with(port, c, sha, subscribers, EVENTS_SIM) for _ in range(3)]
            runs.sort(key=lambda r: r["redis_cpu_usec_per_event"])
            return runs[1]

        base = median_run(0)
        slope_run = median_run(SUBSCRIBERS_SLOPE)

        def slope(field):
            return (slope_run[field] - base[field]) / SUBSCRIBERS_SLOPE

        per_event_bytes = slope_run["bytes_received"] / max(slope_run["messages_received"], 1)
        result["fanout"] = {
            "baseline": base,
            "slope_run": slope_run,
            "redis_cpu_usec_per_subscriber_per_event": round(slope("redis_cpu_usec_per_event"), 4),
            "commandstats_usec_per_subscriber_per_event": round(slope("mark_usec_per_call"), 4),
            "bytes_per_subscriber_per_event": round(per_event_bytes, 1),
        }
        sim = median_run(SUBSCRIBERS_SIM)

        def model(field):
            return base[field] + slope(field) * SUBSCRIBERS_SIM

        model_bytes = per_event_bytes * SUBSCRIBERS_SIM * EVENTS_SIM
        result["simulation"] = {
            **sim,
            "model_redis_cpu_usec_per_event": round(model("redis_cpu_usec_per_event"), 2),
            "ratio_redis_cpu_simulated_over_model": round(
                sim["redis_cpu_usec_per_event"] / model("redis_cpu_usec_per_event"), 3
            ),
            "model_mark_usec_per_call": round(model("mark_usec_per_call"), 2),
            "ratio_commandstats_simulated_over_model": round(
                sim["mark_usec_per_call"] / model("mark_usec_per_call"), 3
            ),
            "model_bytes": round(model_bytes),
            "ratio_bytes_simulated_over_model": round(sim["bytes_received"] / model_bytes, 3),
            "delivered_ratio": round(sim["messages_received"] / (SUBSCRIBERS_SIM * EVENTS_SIM), 4),
        }
        text = json.dumps(result, indent=2)
        print(text)
        if "--json" in sys.argv:
            with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
                f.write(text + "\n")
        # the simulation must have delivered every event, or the ratios mean nothing
        if result["simulation"]["delivered_ratio"] < 1.0:
            sys.exit("not every event reached every subscriber")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
