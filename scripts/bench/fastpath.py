"""The fast path's benchmark (issue 20), driven by scripts/bench-fastpath.sh.

Starts Redis, tokengate (revocation feed on), the bare ext_authz server and five Envoys
(one worker each) on 127.0.0.1; measures them with h2load --h1 in interleaved rounds,
then the logout-to-first-401 propagation through the fast path and Envoy's memory per
entry of the set; writes the section of docs/performance.md between its markers.
Every process started here is stopped on exit.
"""

import argparse
import datetime
import http.client
import math
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BEGIN = "<!-- fastpath:begin -->"
END = "<!-- fastpath:end -->"
FEED_TOKEN = "bench-feed-token"
CASES = ["none", "jwt-authn-cache", "fast-path", "grpc-tokengate", "grpc-bare"]
PROCS = []


def read(path):
    return pathlib.Path(path).read_text()


def write(path, text):
    pathlib.Path(path).write_text(text)


def log(msg):
    print(f"bench-fastpath: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, args, work):
    with open(os.path.join(work, f"{name}.log"), "w") as out:
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    PROCS.append((name, p))
    return p


def stop_all():
    for _, p in reversed(PROCS):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for _, p in reversed(PROCS):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_until(what, deadline_s, cond):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench-fastpath: timed out waiting for {what}")


def get(port, path="/", token=None, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    c.request(method, path, headers=headers)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def fill(src, dst, values):
    text = read(src)
    for k, v in values.items():
        text = text.replace(k, str(v))
    write(dst, text)


def h2load(port, token, seconds, conns):
    out = subprocess.run(
        [
            "timeout",
            str(seconds + 30),
            "h2load",
            "--h1",
            "-c",
            str(conns),
            "-t",
            "1",
            "-D",
            str(seconds),
            "--warm-up-time",
            "1",
            "-H",
            f"authorization: Bearer {token}",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    reqs = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if not (rps and codes and reqs):
        return None, out
    non2xx = sum(int(codes.group(i)) for i in (2, 3, 4))
    bad = non2xx + int(reqs.group(3)) + int(reqs.group(4))
    valid = bad == 0 and int(codes.group(1)) > 0
    return (float(rps.group(1)) if valid else None), out


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tokengate_config(work, name, ports, redis_port, store_timeout_ms=50):
    text = read("scripts/bench/tokengate.yaml")
    for k, v in {
        "@GRPC_PORT@": ports["grpc"],
        "@HTTP_PORT@": ports["http"],
        "@ADMIN_PORT@": ports["admin"],
        "@REDIS_PORT@": redis_port,
        "@CACHE_TTL@": 5,
        "@STORE_TIMEOUT_MS@": store_timeout_ms,
    }.items():
        text = text.replace(k, str(v))
    token_file = os.path.join(work, "feed-token")
    write(token_file, FEED_TOKEN)
    text += f"revocation_feed:\n  enabled: true\n  token_file: {token_file}\n"
    path = os.path.join(work, f"{name}.yaml")
    write(path, text)
    return path


def start_envoy(args, work, name, template, values):
    cfg = os.path.join(work, f"envoy-{name}.yaml")
    fill(template, cfg, values)
    p = start(
        f"envoy-{name}", [args.envoy, "-c", cfg, "--concurrency", "1", "--disable-hot-restart", "-l", "warning"], work
    )
    admin = values["@ADMIN_PORT@"]
    wait_until(f"envoy {name}", 30, lambda: get(admin, "/ready") == 200)
    return p


def wasmtime_available(args, work, jwks, feed_port):
    """Whether this Envoy accepts the fast path on `envoy.wasm.runtime.wasmtime`."""
    cfg = os.path.join(work, "envoy-wasmtime.yaml")
    values = {
        "@LISTEN_PORT@": free_port(),
        "@ADMIN_PORT@": free_port(),
        "@JWKS@": jwks,
        "@RUNTIME@": "envoy.wasm.runtime.wasmtime",
        "@MODULE@": args.module,
        "@FEED_TOKEN@": FEED_TOKEN,
        "@FEED_PORT@": feed_port,
    }
    fill("scripts/bench/envoy-jwt-fastpath.yaml", cfg, values)
    r = subprocess.run(
        [args.envoy, "--mode", "validate", "-c", cfg, "--disable-hot-restart", "-l", "error"],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.returncode == 0


def h2load_n(port, token, n):
    """`n` requests on 4 connections; whether every one was answered 2xx."""
    out = subprocess.run(
        ["timeout", "600", "h2load", "--h1", "-c", "4", "-t", "1", "-n", str(n)]
        + ["-H", f"authorization: Bearer {token}", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    codes = re.search(r"status codes: (\d+) 2xx", out)
    return bool(codes) and int(codes.group(1)) == n


def callgrind_count(proc, port, token, n, warm, prefix):
    """Instructions `proc` (run under callgrind, instrumentation off) executes per request
    over `n` requests after `warm` unmeasured ones, and whether all were answered 2xx."""
    h2load_n(port, token, warm)
    ctl = ["callgrind_control"]
    subprocess.run([*ctl, "-i", "on", str(proc.pid)], capture_output=True, check=True)
    ok = h2load_n(port, token, n)
    subprocess.run([*ctl, "-i", "off", str(proc.pid)], capture_output=True, check=True)
    subprocess.run([*ctl, "-d", str(proc.pid)], capture_output=True, check=True)
    dump = pathlib.Path(f"{prefix}.{proc.pid}.1")
    wait_until(f"the callgrind dump {dump.name}", 60, lambda: "totals:" in (dump.read_text() if dump.exists() else ""))
    total = int(re.search(r"^totals: (\d+)", dump.read_text(), re.MULTILINE).group(1))
    proc.terminate()
    proc.wait(timeout=60)
    return total / n, ok


def valgrind(prefix):
    return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file"] + [
        f"--callgrind-out-file={prefix}.%p"
    ]


def instructions(args, work, values_for, bench_token, redis_port):
    """Per request, under callgrind (deterministic where throughput on a shared host is
    not): Envoy's instructions in each case, then tokengate's and the bare server's per
    Check (each behind a plain Envoy)."""
    n, warm = (300, 100) if args.smoke else (4000, 2000)
    envoy = {}
    for case in CASES:
        values, template = values_for(case)
        # Envoy under valgrind runs its timers slow: the Check timeout would fire.
        values["@AUTHZ_TIMEOUT@"] = "10s"
        cfg = os.path.join(work, f"envoy-cg-{case}.yaml")
        fill("scripts/bench/" + template, cfg, values)
        prefix = os.path.join(work, f"cg-envoy-{case}")
        cmd = [args.envoy, "-c", cfg, "--concurrency", "1", "--disable-hot-restart", "-l", "error"]
        p = start(f"envoy-cg-{case}", valgrind(prefix) + cmd, work)
        lport = values["@LISTEN_PORT@"]
        wait_until(f"envoy {case} under callgrind", 300, lambda lp=lport: get(lp, "/", bench_token) == 200)
        envoy[case] = callgrind_count(p, lport, bench_token, n, warm, prefix)
        log(f"callgrind: envoy {case}: {envoy[case][0]:,.0f} instructions a request")
    servers = {}
    for name in ["tokengate", "bare"]:
        prefix = os.path.join(work, f"cg-{name}")
        if name == "tokengate":
            ports = {k: free_port() for k in ["grpc", "http", "admin"]}
            cmd = [os.path.join(args.bin, "tokengate"), "serve", "--config"]
            # Under valgrind a store read takes far longer than the default 50 ms bound.
            cmd.append(tokengate_config(work, "tokengate-cg", ports, redis_port, store_timeout_ms=5000))
            grpc = ports["grpc"]
        else:
            grpc = free_port()
            cmd = [os.path.join(args.bin, "bare"), "--grpc", f"127.0.0.1:{grpc}"]
        p = start(f"{name}-cg", valgrind(prefix) + cmd, work)
        values, template = values_for("grpc-bare")
        values = {**values, "@AUTHZ_PORT@": grpc, "@AUTHZ_TIMEOUT@": "10s"}
        values["@LISTEN_PORT@"], values["@ADMIN_PORT@"] = free_port(), free_port()
        e = start_envoy(args, work, f"front-{name}", "scripts/bench/" + template, values)
        lport = values["@LISTEN_PORT@"]
        wait_until(f"{name} under callgrind", 300, lambda lp=lport: get(lp, "/", bench_token) == 200)
        servers[name] = callgrind_count(p, lport, bench_token, n, warm, prefix)
        log(f"callgrind: {name}: {servers[name][0]:,.0f} instructions a check")
        e.terminate()
        e.wait(timeout=30)
    return {"n": n, "envoy": envoy, "servers": servers}


def percentile(xs, p):
    """Nearest-rank percentile."""
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


def main():
    ap = argparse.ArgumentParser()
    for a in ["bin", "envoy", "module", "profile", "out"]:
        ap.add_argument(f"--{a}", required=True)
    for a in ["seconds", "reps", "connections", "revocations", "entries", "smoke", "callgrind"]:
        ap.add_argument(f"--{a}", type=int, required=True)
    args = ap.parse_args()
    args.module = os.path.abspath(args.module)
    work = tempfile.mkdtemp(prefix="tokengate-bench-fastpath.")
    try:
        return run(args, work)
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)


def run(args, work):
    started = time.time()
    args.load_before = os.getloadavg()[0]
    version = subprocess.run([args.envoy, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"/(\d+\.\d+\.\d+)/", version)
    runtimes = f"Envoy {m.group(1)}" if m else "Envoy ?"
    tokens_file, jwks_file = os.path.join(work, "tokens"), os.path.join(work, "jwks.json")
    subprocess.run(
        [
            os.path.join(args.bin, "gen_requests"),
            "--alg",
            "ES256",
            "--count",
            str(args.revocations + 2),
            "--keys",
            "tests/fixtures/keys",
            "--issuer",
            "https://issuer.bench",
            "--audience",
            "bench-api",
            "--tokens",
            tokens_file,
            "--jwks",
            jwks_file,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tokens = read(tokens_file).split()
    jwks = read(jwks_file).strip()
    bench_token = tokens[0]

    redis_port = free_port()
    start(
        "redis",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        work,
    )
    wait_until("redis", 10, lambda: socket.create_connection(("127.0.0.1", redis_port)).close() is None)
    tg = {k: free_port() for k in ["grpc", "http", "admin"]}
    start(
        "tokengate",
        [os.path.join(args.bin, "tokengate"), "serve", "--config", tokengate_config(work, "tokengate", tg, redis_port)],
        work,
    )
    wait_until("tokengate", 30, lambda: get(tg["admin"], "/readyz") == 200)
    bare = free_port()
    start("bare", [os.path.join(args.bin, "bare"), "--grpc", f"127.0.0.1:{bare}"], work)
    wait_until("bare", 10, lambda: socket.create_connection(("127.0.0.1", bare)).close() is None)

    has_wasmtime = wasmtime_available(args, work, jwks, tg["http"])

    def values_for(case):
        lport, aport = free_port(), free_port()
        values = {
            "@LISTEN_PORT@": lport,
            "@ADMIN_PORT@": aport,
            "@JWKS@": jwks,
            "@AUTHZ_TIMEOUT@": "0.25s",
            "# @AUTHZ_TLS@": "",
            "@RUNTIME@": "envoy.wasm.runtime.v8",
            "@MODULE@": args.module,
            "@FEED_TOKEN@": FEED_TOKEN,
            "@FEED_PORT@": tg["http"],
        }
        template = {
            "none": "envoy-none.yaml",
            "jwt-authn-cache": "envoy-jwt-authn.yaml",
            "fast-path": "envoy-jwt-fastpath.yaml",
            "grpc-tokengate": "envoy-ext-authz-grpc.yaml",
            "grpc-bare": "envoy-ext-authz-grpc.yaml",
        }[case]
        values["@JWT_CACHE@"] = "jwt_cache_config: { jwt_cache_size: 20000 }"
        values["@AUTHZ_PORT@"] = tg["grpc"] if case == "grpc-tokengate" else bare
        return values, template

    ports = {}
    for case in CASES:
        values, template = values_for(case)
        start_envoy(args, work, case, "scripts/bench/" + template, values)
        ports[case] = values["@LISTEN_PORT@"]
    wait_until("the fast path's first set", 30, lambda: get(ports["fast-path"], "/", bench_token) == 200)

    log(f"throughput: {args.reps} rounds x {len(CASES)} cases x {args.seconds}s, h2load --h1 -c {args.connections}")
    results = {c: [] for c in CASES}
    invalid = []
    for rep in range(args.reps):
        for case in CASES:
            rps, out = h2load(ports[case], bench_token, args.seconds, args.connections)
            if rps is None:
                invalid.append(f"{case} round {rep + 1}: {out[-400:]}")
            else:
                results[case].append(rps)
    med = {c: statistics.median(v) if v else 0.0 for c, v in results.items()}

    log(f"propagation: {args.revocations} logouts on tokengate, each to the first 401 from the fast path")
    samples = []
    fp = http.client.HTTPConnection("127.0.0.1", ports["fast-path"], timeout=10)
    for t in tokens[2 : 2 + args.revocations]:
        assert get(ports["fast-path"], "/", t) == 200, "a fresh token is allowed"
        assert get(tg["http"], "/v1/auth/logout", t, method="POST") == 200, "logout"
        t0 = time.perf_counter()
        while True:
            fp.request("GET", "/", headers={"authorization": f"Bearer {t}"})
            r = fp.getresponse()
            r.read()
            if r.status == 401:
                break
            if time.perf_counter() - t0 > 10:
                raise SystemExit("bench-fastpath: a revocation did not reach the fast path in 10 s")
        samples.append((time.perf_counter() - t0) * 1000)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)

    log(f"memory: an Envoy holding {args.entries} revocations against one holding none")
    pipe = "".join(
        f'SET tokengate:jti@bench:mem-{i:08d} "{{\\"reason\\":\\"bench\\",\\"at\\":0}}" EX 7200\r\n'
        for i in range(args.entries)
    )
    subprocess.run(
        ["redis-cli", "-p", str(redis_port), "--pipe"], input=pipe, text=True, check=True, capture_output=True
    )
    tg2 = {k: free_port() for k in ["grpc", "http", "admin"]}
    start(
        "tokengate-mem",
        [
            os.path.join(args.bin, "tokengate"),
            "serve",
            "--config",
            tokengate_config(work, "tokengate-mem", tg2, redis_port),
        ],
        work,
    )
    wait_until("tokengate-mem", 30, lambda: get(tg2["admin"], "/readyz") == 200)
    mem = {}
    for name, token in [("full", FEED_TOKEN), ("empty", "wrong-token")]:
        lport, aport = free_port(), free_port()
        values = {
            "@LISTEN_PORT@": lport,
            "@ADMIN_PORT@": aport,
            "@JWKS@": jwks,
            "@RUNTIME@": "envoy.wasm.runtime.v8",
            "@MODULE@": args.module,
            "@FEED_TOKEN@": token,
            "@FEED_PORT@": tg2["http"],
        }
        p = start_envoy(args, work, f"mem-{name}", "scripts/bench/envoy-jwt-fastpath.yaml", values)
        want = 200 if name == "full" else 503
        wait_until(f"envoy mem-{name}", 60, lambda lp=lport, w=want: get(lp, "/", bench_token) == w)
        for _ in range(200):
            get(lport, "/", bench_token)
        mem[name] = p
    time.sleep(2)
    full, empty = rss_kb(mem["full"].pid), rss_kb(mem["empty"].pid)
    per_entry = max(0, full - empty) * 1024 / max(1, args.entries)

    for p in mem.values():
        p.terminate()
    cg = None
    if args.callgrind:
        log("instructions per request under callgrind (Envoy in each case, then the two servers)")
        cg = instructions(args, work, values_for, bench_token, redis_port)
        invalid += [f"callgrind {k}: not every request answered 2xx" for k, (_, ok) in cg["envoy"].items() if not ok]
        invalid += [f"callgrind {k}: not every check answered 2xx" for k, (_, ok) in cg["servers"].items() if not ok]

    elapsed = time.time() - started
    report(args, med, results, invalid, samples, p50, p99, full, empty, per_entry, has_wasmtime, runtimes, elapsed, cg)
    ok = not invalid and all(med[c] > 0 for c in CASES)
    if not ok:
        log("invalid runs:\n" + "\n".join(invalid))
        return 1
    return 0


def instruction_lines(cg, labels):
    if not cg:
        return ["Instructions per request: not measured in this run (BENCH_FP_CALLGRIND=0 or no valgrind).", ""]
    env, srv = cg["envoy"], cg["servers"]
    jwt = env["jwt-authn-cache"][0]
    lines = [
        (
            f"Instructions per request under callgrind ({cg['n']:,} requests on 4 connections after a "
            "warm-up, counted over every thread of the process): what a shared host's noise does not "
            "move. Envoy's own work in each case, and the ratio a CPU-bound Envoy worker's throughput "
            "follows:"
        ),
        "",
        "| Envoy path | Envoy instructions / request | `jwt_authn` + cache ÷ this |",
        "|---|---:|---:|",
    ]
    for c in CASES:
        lines.append(f"| {labels[c]} | {env[c][0]:,.0f} | {jwt / env[c][0]:.2f}× |")
    tg, bare = srv["tokengate"][0], srv["bare"][0]
    lines += [
        "",
        (
            f"Envoy → tokengate against Envoy → bare, Envoy's side: {env['grpc-bare'][0] / env['grpc-tokengate'][0]:.3f}× "
            "(tokengate's allow sets the two forwarded headers, `x-user-id` and `x-tenant-id`, which Envoy "
            f"applies; the bare server's sets none). Per Check, the servers themselves: tokengate "
            f"{tg:,.0f} instructions, the bare server {bare:,.0f} ({tg / bare:.2f}×). Valgrind hides "
            "SHA-NI, so tokengate's SHA-256 of the token (the verified-token cache's key) runs in "
            "software here: natively it costs about a tenth of that share."
        ),
        "",
    ]
    return lines


def paired(xs, bases):
    """Each round's own ratio of `xs` to `bases` (rounds where both ran)."""
    return [x / b for x, b in zip(xs, bases, strict=False) if x and b]


def report(args, med, results, invalid, samples, p50, p99, full, empty, per_entry, has_wasmtime, runtimes, elapsed, cg):
    jwt = med["jwt-authn-cache"] or 1.0
    labels = {
        "none": "no authorization",
        "jwt-authn-cache": "`jwt_authn` with `jwt_cache_config` (no revocation)",
        "fast-path": "`jwt_authn` + tokengate fast path (proxy-wasm, V8)",
        "grpc-tokengate": "Envoy → tokengate (gRPC ext_authz)",
        "grpc-bare": "Envoy → bare ext_authz (always OK)",
    }
    # Each round runs the cases back to back, so a ratio within a round compares runs
    # seconds apart; the machine's speed drifts more than that between rounds. The
    # median of those paired ratios is the figure held against the targets.
    paired_fp = paired(results["fast-path"], results["jwt-authn-cache"])
    paired_tg = paired(results["grpc-tokengate"], results["grpc-bare"])
    ratio = statistics.median(paired_fp) if paired_fp else 0.0
    tg_bare = statistics.median(paired_tg) if paired_tg else 0.0
    lines = [
        BEGIN,
        "## After issue 20 (in-proxy fast path)",
        "",
        (
            f"`scripts/bench-fastpath.sh` ({args.profile} build), "
            f"{datetime.date.today().isoformat()}: one Envoy worker each (`--concurrency 1`), "
            f"`h2load --h1 -c {args.connections} -t 1 -D {args.seconds}` with the same ES256 token, "
            f"{args.reps} interleaved rounds (each round runs every case back to back), medians; every run "
            "counted only with all answers 2xx. "
            "Load generator, Envoys and tokengate share this machine's 2 cores."
        ),
        "",
        "| Envoy path | req/s | × `jwt_authn` + cache | rounds |",
        "|---|---:|---:|---|",
    ]
    for c in CASES:
        rounds = ", ".join(f"{x:,.0f}" for x in results[c]) or "invalid"
        lines.append(f"| {labels[c]} | {med[c]:,.0f} | {med[c] / jwt:.2f}× | {rounds} |")
    lines += [
        "",
        f"Target `jwt_authn` + fast path ≥ 0.75× `jwt_authn` with cache: **{ratio:.2f}×, "
        f"{'met' if ratio >= 0.75 else 'not met'}** (median of the {len(paired_fp)} rounds' own ratios: "
        + ", ".join(f"{r:.2f}×" for r in paired_fp)
        + f"; ratio of the medians {med['fast-path'] / jwt:.2f}×). Runtime: `envoy.wasm.runtime.v8`; this Envoy "
        f"({runtimes}) "
        + (
            "also accepts `envoy.wasm.runtime.wasmtime` (not measured here)."
            if has_wasmtime
            else "refuses `envoy.wasm.runtime.wasmtime` (its build has only `null` and `v8`): V8 is the one measured."
        ),
        "",
        (
            f"Envoy → tokengate against Envoy → bare with tokengate's default configuration "
            f"(`forward.dynamic_metadata` off since issue 20): "
            f"**{tg_bare:.2f}×** (target ≥ 0.95×: {'met' if tg_bare >= 0.95 else 'not met'} in this run; "
            "median of the rounds' own ratios: "
            + ", ".join(f"{r:.2f}×" for r in paired_tg)
            + f"; ratio of the medians {med['grpc-tokengate'] / (med['grpc-bare'] or 1.0):.2f}×)."
        ),
        "",
        (
            f"Propagation, logout on tokengate (200) → first 401 from the fast path, over {len(samples)} "
            f"revocations: **p50 {p50:.1f} ms, p99 {p99:.1f} ms** (target p99 < 250 ms: "
            f"{'met' if p99 < 250 else 'not met'}). Path: tokengate's feed answers the singleton's long poll "
            "at once; the workers pick the new set up on their 50 ms timer."
        ),
        "",
        (
            f"Memory: an Envoy (one worker) whose set holds {args.entries:,} `jti` revocations "
            f"(`bench:mem-NNNNNNNN`, 18-byte ids) used {full / 1024:.1f} MiB resident against "
            f"{empty / 1024:.1f} MiB with an empty set: **{per_entry:.0f} bytes per entry** (the "
            "singleton's set, the shared-data copy and each worker's set). Bound per Envoy ≈ "
            "entries × that figure, plus one worker-set share per extra worker."
        ),
        "",
        *instruction_lines(cg, labels),
        (
            f"Whole run {elapsed:.0f} s; load average {args.load_before:.1f} at its start and "
            f"{os.getloadavg()[0]:.1f} at its end (other work shares the machine: compare ratios "
            "within one run, not across runs)."
        ),
        END,
    ]
    section = "\n".join(lines) + "\n"
    text = read(args.out) if os.path.exists(args.out) else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1 :]
    else:
        text = text + ("\n" if text and not text.endswith("\n\n") else "") + section
    write(args.out, text)
    print(section)


if __name__ == "__main__":
    sys.exit(main())
