#!/usr/bin/env python3
"""pwrotd benchmarks against pwrotd-sim, on loopback. Prints one table per scenario.

    cargo build --release
    python3 bench/run.py cpu      # CPU per rotation: pwrotd vs the official Python SDK
    python3 bench/run.py burst    # 10,000 accounts due at once, max_concurrent = 64
    python3 bench/run.py raw      # the simulator's raw capacity (wrk replaying signed requests)
    python3 bench/run.py rest     # 100,000 accounts at rest: start-up, memory, idle CPU, scrape
    python3 bench/run.py storm    # 10,000 accounts whose cron fires in the same second

`cpu` needs the SDK: PWROTD_SDK_PYTHON names a Python with alibabacloud-polardb20170801
installed (default: target/sdk-venv/bin/python, which .ci/run creates). `raw` needs wrk
(apt-get install wrk). Every process talks only to 127.0.0.1 and stops by itself.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PWROTD = os.path.join(ROOT, "target/release/pwrotd")
SIM = os.path.join(ROOT, "target/release/pwrotd-sim")
KEY_ID = "LTAIbench000001"
SECRET = "bench-secret-" + secrets.token_hex(8)
ENV = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=SECRET)
ENV.pop("NOTIFY_SOCKET", None)
ENV.pop("RUST_LOG", None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accounts_toml(n, extra=""):
    return "".join(
        f'[[account]]\nname = "acct-{i:06d}"\napi = "ModifyAccountPassword"\n'
        f'cluster_id = "pc-bench{i % 1000:04d}"\naccount_name = "user{i:06d}"\n{extra}'
        for i in range(n)
    )


def write_config(workdir, endpoint, n, daemon="", defaults="", account_extra=""):
    path = os.path.join(workdir, "pwrotd.toml")
    port = free_port()
    with open(path, "w") as f:
        f.write(
            f'[daemon]\nstate_dir = "{workdir}/state"\nmetrics_listen = "127.0.0.1:{port}"\n{daemon}\n'
            f'[cloud]\nregion_id = "cn-hangzhou"\ntimeout = "30s"\nrequests_per_second = 1000000\n'
            f'[cloud.endpoints]\npolardb = "{endpoint}"\nrds = "{endpoint}"\n'
            f'[defaults]\nevery = "30d"\njitter = "0s"\n{defaults}\n'
            + accounts_toml(n, account_extra)
        )
    return path, f"http://127.0.0.1:{port}"


class Sim:
    def __init__(self, config, *args):
        self.proc = subprocess.Popen(
            [SIM, "--listen", "127.0.0.1:0", "--config", config, *args],
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.proc.stdout.readline()
        self.url = line.strip().rsplit(" ", 1)[-1].rstrip("/")

    def stats(self):
        return json.load(urllib.request.urlopen(self.url + "/_sim/stats", timeout=30))

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def seed_sinks(state, n, created):
    """Writes n sink files as if every account had rotated at `created`."""
    secrets_dir = os.path.join(state, "secrets")
    os.makedirs(secrets_dir, mode=0o700, exist_ok=True)
    os.chmod(state, 0o700)
    for i in range(n):
        name = f"acct-{i:06d}"
        body = {
            "format": 1, "account": name, "api": "ModifyAccountPassword",
            "resource_id": f"pc-bench{i % 1000:04d}", "account_name": f"user{i:06d}",
            "current": {"version": 1, "username": f"user{i:06d}", "password": "Seed-Pw-1!" + secrets.token_hex(4),
                        "created_time": created, "request_id": "SEED"},
            "pending": None, "previous": [],
        }
        path = os.path.join(secrets_dir, name + ".json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f)


def audit_lines(state):
    try:
        with open(os.path.join(state, "audit.jsonl")) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


def wait_until(check, limit, what):
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > limit:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def healthy(metrics):
    try:
        return urllib.request.urlopen(metrics + "/healthz", timeout=2).status == 200
    except OSError:
        return False


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def table(title, header, rows):
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def cpu(n=2000):
    sdk_python = os.environ.get("PWROTD_SDK_PYTHON", os.path.join(ROOT, "target/sdk-venv/bin/python"))
    with tempfile.TemporaryDirectory() as work:
        path, _ = write_config(work, "http://127.0.0.1:1", n, daemon="max_concurrent = 4")
        sim = Sim(path)
        path, _ = write_config(work, sim.url, n, daemon="max_concurrent = 4")
        before = children_cpu()
        t = time.monotonic()
        out = subprocess.run([PWROTD, "rotate", "--config", path, "--all"], env=ENV, capture_output=True, text=True)
        wall_p = time.monotonic() - t
        pwrotd_cpu = children_cpu() - before
        ok = out.stdout.count(" success ")
        assert out.returncode == 0 and ok == n, out.stdout[-500:] + out.stderr[-500:]

        script = os.path.join(ROOT, "bench/sdk_client.py")
        before = children_cpu()
        subprocess.run([sdk_python, script, sim.url, KEY_ID, SECRET, "0"], env=ENV, check=True)
        sdk_startup = children_cpu() - before
        before = children_cpu()
        t = time.monotonic()
        subprocess.run([sdk_python, script, sim.url, KEY_ID, SECRET, str(n)], env=ENV, check=True)
        wall_s = time.monotonic() - t
        sdk_cpu = children_cpu() - before
        stats = sim.stats()
        sim.stop()
    per_p = pwrotd_cpu / n * 1000
    per_s = sdk_cpu / n * 1000
    per_s_net = (sdk_cpu - sdk_startup) / n * 1000
    table(
        f"CPU per rotation, {n} ModifyAccountPassword calls each, V1 signatures (simulator answered {stats['requests']})",
        ["client", "wall s", "user+sys CPU s", "CPU ms per rotation", "ratio"],
        [
            ["pwrotd rotate --all (sink files fsynced)", f"{wall_p:.2f}", f"{pwrotd_cpu:.2f}", f"{per_p:.3f}", "1"],
            ["official Python SDK (signature_algorithm='v2')", f"{wall_s:.2f}", f"{sdk_cpu:.2f}", f"{per_s:.3f}", f"{per_s / per_p:.1f}x"],
            ["  the same, less its start-up (imports)", "", f"{sdk_cpu - sdk_startup:.2f}", f"{per_s_net:.3f}", f"{per_s_net / per_p:.1f}x"],
        ],
    )


def burst(n=10000, state_parent=None):
    rows = []
    for where in ([state_parent] if state_parent else [None, "/dev/shm"]):
        with tempfile.TemporaryDirectory(dir=where) as work:
            path, _ = write_config(work, "http://127.0.0.1:1", n)
            sim = Sim(path)
            path, metrics = write_config(work, sim.url, n, daemon="max_concurrent = 64")
            state = os.path.join(work, "state")
            t0 = time.monotonic()
            daemon = subprocess.Popen([PWROTD, "run", "--config", path], env=ENV, stderr=subprocess.DEVNULL)
            wait_until(lambda: healthy(metrics), 120, "ready")
            t_ready = time.monotonic()
            wait_until(lambda: len(audit_lines(state)) >= n, 600, "every rotation")
            t_done = time.monotonic()
            stop(daemon)
            lines = audit_lines(state)
            sim.stop()
        ok = sum(1 for l in lines if l["outcome"] == "success")
        durations = [l["duration_ms"] for l in lines]
        rate = n / (t_done - t_ready)
        rows.append([
            "disk (ext4/overlay)" if where is None else where + " (tmpfs: fsync is free)",
            ok, f"{t_done - t_ready:.1f}", f"{rate:.0f}", pct(durations, 50), pct(durations, 99),
        ])
    table(
        f"Burst: {n} accounts due at once, max_concurrent = 64, durability on",
        ["state_dir on", "rotated", "seconds", "rotations/s", "p50 ms", "p99 ms"],
        rows,
    )


def v1_body(cluster, account, password):
    params = {
        "AccessKeyId": KEY_ID, "Action": "ModifyAccountPassword", "Format": "JSON", "RegionId": "cn-hangzhou",
        "SignatureMethod": "HMAC-SHA1", "SignatureNonce": secrets.token_hex(16), "SignatureVersion": "1.0",
        "Timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": "2017-08-01", "DBClusterId": cluster, "AccountName": account, "NewAccountPassword": password,
    }
    enc = lambda s: urllib.parse.quote(s, safe="-_.~")
    query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
    sts = "POST&%2F&" + enc(query)
    sig = base64.b64encode(hmac.new((SECRET + "&").encode(), sts.encode(), hashlib.sha1).digest()).decode()
    return query + "&Signature=" + enc(sig)


def raw(n=10000, seconds=10):
    if not shutil.which("wrk"):
        raise SystemExit("raw needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as work:
        path, _ = write_config(work, "http://127.0.0.1:1", n)
        sim = Sim(path, "--allow-nonce-replay")
        bodies = [v1_body(f"pc-bench{i % 1000:04d}", f"user{i:06d}", "Ab1!" + secrets.token_hex(6)) for i in range(500)]
        lua = os.path.join(work, "replay.lua")
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n')
            f.write("bodies = {" + ",".join(json.dumps(b) for b in bodies) + "}\n")
            f.write("i = 0\nrequest = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, '/', nil, bodies[i])\nend\n")
        out = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "-s", lua, sim.url + "/"], capture_output=True, text=True)
        stats = sim.stats()
        sim.stop()
    rps = next(l.split()[1] for l in out.stdout.splitlines() if l.startswith("Requests/sec"))
    table(
        "The simulator's raw capacity: wrk, 64 connections, replaying signed ModifyAccountPassword requests (V1)",
        ["load generator", "requests/s", "simulator replies OK"],
        [["wrk -t2 -c64", rps, stats["by_code"].get("OK", 0)]],
    )


def rest(n=100000, idle=60):
    with tempfile.TemporaryDirectory() as work:
        path, _ = write_config(work, "http://127.0.0.1:1", n)
        sim = Sim(path)
        path, metrics = write_config(work, sim.url, n)
        state = os.path.join(work, "state")
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        seed_sinks(state, n, now)
        sock_path = os.path.join(work, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(120)
        env = dict(ENV, NOTIFY_SOCKET=sock_path)
        t0 = time.monotonic()
        daemon = subprocess.Popen([PWROTD, "run", "--config", path], env=env, stderr=subprocess.DEVNULL)
        while b"READY=1" not in sock.recv(4096):
            pass
        t_ready = time.monotonic() - t0
        wait_until(lambda: healthy(metrics), 60, "healthz")
        t_health = time.monotonic() - t0
        time.sleep(5)
        ticks = os.sysconf("SC_CLK_TCK")

        def cpu_s():
            fields = open(f"/proc/{daemon.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks

        c0, w0 = cpu_s(), time.monotonic()
        time.sleep(idle)
        idle_pct = (cpu_s() - c0) / (time.monotonic() - w0) * 100
        rss = next(int(l.split()[1]) for l in open(f"/proc/{daemon.pid}/status") if l.startswith("VmRSS")) / 1024
        t = time.monotonic()
        body = urllib.request.urlopen(metrics + "/metrics", timeout=60).read()
        scrape = time.monotonic() - t
        rotated = len(audit_lines(state))
        stop(daemon)
        sim.stop()
    table(
        f"At rest: {n} accounts configured, all rotated (seeded sink files), none due",
        ["start to READY=1", "start to /healthz 200", "RSS", f"CPU over {idle} s idle", "/metrics scrape", "/metrics size", "rotations during the run"],
        [[f"{t_ready:.2f} s", f"{t_health:.2f} s", f"{rss:.0f} MiB", f"{idle_pct:.2f}% of a core", f"{scrape * 1000:.0f} ms", f"{len(body) / 1e6:.1f} MB", rotated]],
    )


def storm(n=10000, lead=45):
    fire = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(seconds=lead)
    cron = f"{fire.second} {fire.minute} {fire.hour} * * *"
    with tempfile.TemporaryDirectory() as work:
        path, _ = write_config(work, "http://127.0.0.1:1", n)
        sim = Sim(path)
        path, metrics = write_config(work, sim.url, n, daemon="max_concurrent = 64", account_extra=f'cron = "{cron}"\n')
        state = os.path.join(work, "state")
        seed_sinks(state, n, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        daemon = subprocess.Popen([PWROTD, "run", "--config", path], env=ENV, stderr=subprocess.DEVNULL)
        wait_until(lambda: healthy(metrics), 120, "ready")
        wait_until(lambda: len(audit_lines(state)) >= n, lead + 600, "the storm")
        time.sleep(1)
        stop(daemon)
        lines = audit_lines(state)
        sim.stop()
    fire_ts = fire.timestamp()
    delays, done = [], []
    for l in lines:
        end = datetime.datetime.strptime(l["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
        delays.append(end - l["duration_ms"] / 1000 - fire_ts)
        done.append(end - fire_ts)
    ok = sum(1 for l in lines if l["outcome"] == "success" and l["version"] == 2)
    table(
        f"Same-second storm: {n} accounts with cron \"{cron}\" (UTC), max_concurrent = 64",
        ["activations", "rotated (v1 -> v2)", "dropped", "delay to start p50", "worst delay to start", "last rotation done after"],
        [[len(lines), ok, n - ok, f"{statistics.median(delays):.2f} s", f"{max(delays):.2f} s", f"{max(done):.2f} s"]],
    )


if __name__ == "__main__":
    for binary in (PWROTD, SIM):
        if not os.path.exists(binary):
            raise SystemExit(f"{binary} is missing: run cargo build --release first")
    scenarios = {"cpu": cpu, "burst": burst, "raw": raw, "rest": rest, "storm": storm}
    chosen = sys.argv[1:] or ["cpu", "burst", "raw", "rest", "storm"]
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
    for name in chosen:
        scenarios[name]()
