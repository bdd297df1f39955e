#!/usr/bin/env python3
"""pwrotd benchmarks against pwrotd-sim, on loopback. Prints one table per scenario.

    cargo build --release
    python3 bench/run.py cpu      # CPU per rotation: pwrotd vs the official Python SDK
    python3 bench/run.py burst    # 10,000 accounts due at once, max_concurrent = 64
    python3 bench/run.py raw      # the simulator's raw capacity (wrk replaying signed requests)
    python3 bench/run.py rest     # 100,000 accounts at rest: start-up, memory, idle CPU, scrape
    python3 bench/run.py storm    # 10,000 accounts whose cron fires in the same second
    python3 bench/run.py cluster  # cluster mode: mirror lag, failover, cost of a rotation vs the file store

`cpu` needs the SDK: PWROTD_SDK_PYTHON names a Python with alibabacloud-polardb20170801
installed (default: target/sdk-venv/bin/python, which .ci/run creates). `raw` needs wrk
(apt-get install wrk). `cluster` needs a PostgreSQL: PWROTD_TEST_POSTGRES_ADMIN, an admin URL (each
run creates a database and drops it), and psql; PWROTD_BENCH_CLUSTER=mirror,failover,cost picks
parts. Binaries are read from $CARGO_TARGET_DIR/release when it is set. Every process talks only to 127.0.0.1 and stops by itself.
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
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
PWROTD = os.path.join(TARGET, "release/pwrotd")
SIM = os.path.join(TARGET, "release/pwrotd-sim")
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


def write_config(workdir, endpoint, n, daemon="", defaults="", account_extra="", timeout="30s", store=""):
    path = os.path.join(workdir, "pwrotd.toml")
    port = free_port()
    with open(path, "w") as f:
        f.write(
            f'[daemon]\nstate_dir = "{workdir}/state"\nmetrics_listen = "127.0.0.1:{port}"\n{daemon}\n'
            f'[cloud]\nregion_id = "cn-hangzhou"\ntimeout = "{timeout}"\nrequests_per_second = 1000000\n'
            f'[cloud.endpoints]\npolardb = "{endpoint}"\nrds = "{endpoint}"\n'
            f'[defaults]\nevery = "30d"\njitter = "0s"\n{defaults}\n'
            + accounts_toml(n, account_extra)
            + store
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


# --- cluster mode (docs/cluster.md) -------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid, children=False):
    """user+sys CPU seconds of `pid` (and of its reaped children), from /proc/<pid>/stat."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def postgres_cpu():
    """CPU seconds of every postgres process on this host: the postmaster with its reaped
    backends, plus its live children (a pool's backends live as long as the pool)."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if comm in ("postgres", "postmaster"):
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            total += proc_cpu(pid, children=(ppid == 1 or not os.path.exists(f"/proc/{ppid}/comm")
                                             or open(f"/proc/{ppid}/comm").read().strip() not in ("postgres", "postmaster")))
    return total


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def psql(url, sql):
    out = subprocess.run(["psql", "-XAtq", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"psql: {out.stderr.strip()}")
    return [l.split("\t") for l in out.stdout.splitlines() if l]


class Store:
    """A fresh database on the PostgreSQL of PWROTD_TEST_POSTGRES_ADMIN, dropped at the end."""

    def __init__(self):
        self.admin = os.environ.get("PWROTD_TEST_POSTGRES_ADMIN")
        if not self.admin:
            raise SystemExit("cluster needs PWROTD_TEST_POSTGRES_ADMIN (an admin URL of a PostgreSQL)")
        self.name = "pwrotd_bench_" + secrets.token_hex(4)
        psql(self.admin, f"CREATE DATABASE {self.name}")
        self.url = self.admin.rsplit("/", 1)[0] + f"/{self.name}?sslmode=disable"
        self.key = subprocess.run([PWROTD, "genkey"], capture_output=True, text=True, check=True).stdout

    def q(self, sql):
        return psql(self.url, sql)

    def drop(self):
        psql(self.admin, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class Replica:
    def __init__(self, work, name, sim_url, n, store, lease, **kw):
        self.name = name
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        url_file, key_file = os.path.join(self.dir, "store-url"), os.path.join(self.dir, "store.key")
        write_private(url_file, store.url)
        write_private(key_file, store.key)
        section = (f'\n[store]\nkind = "postgresql"\nurl_file = "{url_file}"\nkey_file = "{key_file}"\n'
                   f'lease = "{lease}"\nnode_name = "{name}"\n')
        self.config, self.metrics = write_config(self.dir, sim_url, n, store=section, **kw)
        self.state = os.path.join(self.dir, "state")
        self.proc = None

    def start(self):
        env = dict(ENV)
        env.pop("PWROTD_STORE_URL", None)
        env.pop("CREDENTIALS_DIRECTORY", None)
        log = open(os.path.join(self.dir, "log"), "a")
        self.proc = subprocess.Popen([PWROTD, "run", "--config", self.config], env=env,
                                     stdout=subprocess.DEVNULL, stderr=log)
        log.close()

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self):
        if self.proc:
            stop(self.proc)
            self.proc = None

    def log_problems(self):
        try:
            lines = open(os.path.join(self.dir, "log")).read().splitlines()
        except FileNotFoundError:
            return []
        return [l for l in lines if (" WARN " in l or " ERROR " in l or "panicked" in l) and "is under an hour" not in l]

    def local(self, account):
        path = os.path.join(self.state, "secrets", account + ".json")
        try:
            st = os.stat(path)
            with open(path) as f:
                body = json.load(f)
        except (OSError, ValueError):
            return None
        return body, st.st_mtime_ns / 1e9


def leader_of(store, replicas):
    holder, epoch, live = store.q("SELECT holder, epoch, expires_at > now() FROM pwrotd_lease")[0]
    if live != "t":
        return None, int(epoch)
    return next((r for r in replicas if r.name == holder), None), int(epoch)


def store_rows(store):
    """account -> (version, settled, updated_at as Unix seconds)."""
    rows = store.q("SELECT account, version, record->'pending' IS NULL OR record->'pending' = 'null'::jsonb, "
                   "extract(epoch FROM updated_at) FROM pwrotd_secrets")
    return {a: (int(v), p == "t", float(u)) for a, v, p, u in rows}


def settled_at_least(store, version):
    return int(store.q(
        f"SELECT count(*) FROM pwrotd_secrets WHERE version >= {version} AND "
        "(record->'pending' IS NULL OR record->'pending' = 'null'::jsonb)")[0][0])


def mirror_lags(store, replicas, names, version, limit=120):
    """Waits until every replica holds `version` of every account, then returns the lags (local
    mtime less the store's updated_at) and what never arrived."""
    rows = store_rows(store)
    deadline = time.monotonic() + limit
    lags, missing = {}, {}
    while True:
        missing = {}
        for r in replicas:
            for a in names:
                if (r.name, a) in lags:
                    continue
                got = r.local(a)
                want = rows[a]
                if got and got[0].get("current") and got[0]["current"]["version"] == want[0] and not got[0].get("pending"):
                    lags[(r.name, a)] = got[1] - want[2]
                else:
                    missing[(r.name, a)] = got[0].get("current", {}).get("version") if got else None
        if not missing or time.monotonic() > deadline:
            return lags, missing
        time.sleep(2)


def lag_row(label, lags, missing, extra=()):
    v = list(lags.values())
    return [label, len(v), f"{pct(v, 50) * 1000:.0f} ms", f"{pct(v, 99) * 1000:.0f} ms", f"{max(v) * 1000:.0f} ms",
            f"{min(v) * 1000:.0f} ms", len(missing), *extra]


def cluster_mirror(n=10000, replicas=3):
    rows_out, notes = [], []
    store = Store()
    work = tempfile.mkdtemp(prefix="pwrotd-bench-")
    sim, fleet = None, []
    try:
        path, _ = write_config(work, "http://127.0.0.1:1", n)
        sim = Sim(path)
        fleet = [Replica(work, f"replica-{i}", sim.url, n, store, "15s", daemon="max_concurrent = 64", timeout="5s")
                 for i in range(replicas)]
        t0 = time.time()
        for r in fleet:
            r.start()
        for r in fleet:
            wait_until(lambda: healthy(r.metrics), 120, f"{r.name} ready")
        t_ready = time.time()
        names = [f"acct-{i:06d}" for i in range(n)]
        # Wave 1: every account was never rotated, so the leader rotates them all at start.
        wait_until(lambda: settled_at_least(store, 1) >= n, 900, "the first wave")
        rows = store_rows(store)
        w1_first = store.q("SELECT extract(epoch FROM min(at)) FROM pwrotd_audit")[0][0]
        w1_last = max(u for _, _, u in rows.values())
        lags1, missing1 = mirror_lags(store, fleet, names, 1)
        rows_out.append(lag_row("1: at start (never rotated, all due)", lags1, missing1,
                                [f"{w1_last - float(w1_first):.1f} s", f"{n / (w1_last - float(w1_first)):.0f}/s", loadavg()]))
        # Wave 2: SIGUSR1 to the leader rotates every account once more.
        leader, epoch = leader_of(store, fleet)
        time.sleep(3)
        t_sig = time.time()
        leader.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: settled_at_least(store, 2) >= n, 900, "the second wave")
        rows = store_rows(store)
        w2_last = max(u for _, _, u in rows.values())
        lags2, missing2 = mirror_lags(store, fleet, names, 2)
        rows_out.append(lag_row(f"2: SIGUSR1 to the leader ({leader.name})", lags2, missing2,
                                [f"{w2_last - t_sig:.1f} s", f"{n / (w2_last - t_sig):.0f}/s", loadavg()]))
        for lags, missing, wave in ((lags1, missing1, 1), (lags2, missing2, 2)):
            per = {r.name: [v for (rn, _), v in lags.items() if rn == r.name] for r in fleet}
            notes.append(f"wave {wave} by replica: " + ", ".join(
                f"{k} p50 {pct(v, 50) * 1000:.0f} ms p99 {pct(v, 99) * 1000:.0f} ms max {max(v) * 1000:.0f} ms"
                for k, v in per.items() if v))
            worst = sorted(lags.items(), key=lambda kv: -kv[1])[:3]
            notes.append(f"wave {wave} worst: " + ", ".join(f"{k[0]}/{k[1]} {v:.2f} s" for k, v in worst))
            if missing:
                notes.append(f"wave {wave} NOT MIRRORED after 120 s: {len(missing)}, e.g. {list(missing.items())[:5]}")
        notes.append(f"leader {leader.name}, epoch {epoch}; start to all /healthz {t_ready - t0:.1f} s")
        for r in fleet:
            r.stop()
        for r in fleet:
            probs = r.log_problems()
            notes.append(f"{r.name} log: {len(probs)} WARN/ERROR lines" + (": " + " | ".join(probs[:5]) if probs else ""))
    finally:
        for r in fleet:
            r.kill()
        if sim:
            sim.stop()
        store.drop()
        shutil.rmtree(work, ignore_errors=True)
    table(
        f"Mirror lag: {n} accounts, {replicas} replicas; lag = local secret file's mtime - store row's updated_at, "
        f"over every account x replica",
        ["wave", "samples", "p50", "p99", "max", "min", "not mirrored", "leader rotated all in", "rotations/s", "load (1 min)"],
        rows_out,
    )
    for note in notes:
        print("- " + note)


def cluster_failover(kills=10, lease="5s", n=5, replicas=3):
    rows, notes = [], []
    store = Store()
    work = tempfile.mkdtemp(prefix="pwrotd-bench-")
    sim, fleet = None, []
    try:
        path, _ = write_config(work, "http://127.0.0.1:1", n)
        sim = Sim(path)
        fleet = [Replica(work, f"replica-{i}", sim.url, n, store, lease, timeout="2s",
                         defaults='retry_after_failure = "1s"\n', account_extra='every = "2s"\n')
                 for i in range(replicas)]
        for r in fleet:
            r.start()
        for r in fleet:
            wait_until(lambda: healthy(r.metrics), 120, f"{r.name} ready")
        for k in range(kills):
            # The leader must be rotating in its term before it dies.
            def leading():
                leader, epoch = leader_of(store, fleet)
                return leader and int(store.q(f"SELECT count(*) FROM pwrotd_audit WHERE epoch = {epoch}")[0][0]) > 0
            wait_until(leading, 120, "a leader that rotates")
            leader, epoch = leader_of(store, fleet)
            time.sleep(secrets.randbelow(1000) / 1000)  # anywhere in the renewal cycle
            t_kill = time.time()
            leader.proc.kill()
            leader.proc.wait()
            leader.proc = None

            def next_term():
                got = store.q(f"SELECT epoch, extract(epoch FROM min(at)) FROM pwrotd_audit WHERE epoch > {epoch} "
                              "GROUP BY epoch ORDER BY epoch LIMIT 1")
                return got[0] if got else None
            wait_until(next_term, 120, "the new leader's first rotation")
            new_epoch, first = next_term()
            holder, acquired = store.q(f"SELECT holder, extract(epoch FROM acquired_at) FROM pwrotd_lease")[0]
            takeover = (float(acquired) - t_kill) if int(store.q("SELECT epoch FROM pwrotd_lease")[0][0]) == int(new_epoch) else None
            rows.append((float(first) - t_kill, takeover, holder, int(new_epoch) - epoch))
            leader.start()
            wait_until(lambda: healthy(leader.metrics), 120, f"{leader.name} back")
        for r in fleet:
            r.stop()
        for r in fleet:
            probs = r.log_problems()
            notes.append(f"{r.name} log: {len(probs)} WARN/ERROR lines" + (": " + " | ".join(sorted(set(p.split(' ', 2)[-1][:160] for p in probs))[:6]) if probs else ""))
    finally:
        for r in fleet:
            r.kill()
        if sim:
            sim.stop()
        store.drop()
        shutil.rmtree(work, ignore_errors=True)
    goal = humantime(lease) + 5
    firsts = [r[0] for r in rows]
    takes = [r[1] for r in rows if r[1] is not None]
    table(
        f"Failover, lease {lease}: {kills} kill -9 of the leader, {replicas} replicas, {n} accounts every 2 s",
        ["lease", "kills", "kill to takeover p50", "kill to takeover max", "kill to first rotation p50", "max", "goal (lease + 5 s)", "met"],
        [[lease, len(rows), f"{pct(takes, 50):.2f} s" if takes else "-", f"{max(takes):.2f} s" if takes else "-",
          f"{pct(firsts, 50):.2f} s", f"{max(firsts):.2f} s", f"{goal:.0f} s", "yes" if max(firsts) <= goal else "**no**"]],
    )
    print("- each kill: " + ", ".join(f"{f:.2f} s" for f in firsts))
    print("- epochs skipped per kill (1 = the next term): " + ", ".join(str(r[3]) for r in rows))
    for note in notes:
        print("- " + note)


def humantime(text):
    units = {"ms": 0.001, "s": 1, "m": 60}
    for u in ("ms", "s", "m"):
        if text.endswith(u):
            return float(text[: -len(u)]) * units[u]
    raise ValueError(text)


def cluster_cost(n=2000):
    """The same n accounts rotated once more (SIGUSR1, after the first wave at start), by one
    pwrotd with the file store and by one replica with the PostgreSQL store."""
    rows = []
    for kind in ("file", "postgresql"):
        store = Store() if kind == "postgresql" else None
        work = tempfile.mkdtemp(prefix="pwrotd-bench-")
        sim, daemon = None, None
        try:
            path, _ = write_config(work, "http://127.0.0.1:1", n)
            sim = Sim(path)
            if store:
                daemon = Replica(work, "replica-0", sim.url, n, store, "15s", daemon="max_concurrent = 64", timeout="5s")
                daemon.start()
                proc, metrics = daemon.proc, daemon.metrics
                done = lambda v: settled_at_least(store, v) >= n
            else:
                path, metrics = write_config(work, sim.url, n, daemon="max_concurrent = 64", timeout="5s")
                state = os.path.join(work, "state")
                proc = subprocess.Popen([PWROTD, "run", "--config", path], env=ENV, stderr=subprocess.DEVNULL)
                done = lambda v: len(audit_lines(state)) >= n * v
            wait_until(lambda: healthy(metrics), 120, "ready")
            wait_until(lambda: done(1), 600, "the first wave")
            time.sleep(3)
            c0, p0, s0, w0 = proc_cpu(proc.pid), postgres_cpu(), proc_cpu(sim.proc.pid), time.monotonic()
            proc.send_signal(signal.SIGUSR1)
            wait_until(lambda: done(2), 600, "the second wave")
            wall = time.monotonic() - w0
            c1, p1, s1 = proc_cpu(proc.pid), postgres_cpu(), proc_cpu(sim.proc.pid)
            rows.append([kind, n, f"{wall:.2f}", f"{n / wall:.0f}", f"{(c1 - c0) / n * 1000:.3f}",
                         f"{(p1 - p0) / n * 1000:.3f}", f"{(s1 - s0) / n * 1000:.3f}",
                         f"{(c1 - c0 + p1 - p0) / n * 1000:.3f}", loadavg()])
            if store:
                daemon.stop()
            else:
                stop(proc)
        finally:
            if daemon:
                daemon.kill()
            elif proc and proc.poll() is None:
                proc.kill()
            if sim:
                sim.stop()
            if store:
                store.drop()
            shutil.rmtree(work, ignore_errors=True)
    table(
        f"Cost of a rotation: {n} accounts rotated once (SIGUSR1, after the first wave), max_concurrent = 64, "
        "state_dir and PostgreSQL's data on the same disk",
        ["store", "rotations", "seconds", "rotations/s", "pwrotd CPU ms/rotation", "PostgreSQL CPU ms/rotation",
         "simulator CPU ms/rotation", "pwrotd + PostgreSQL", "load (1 min)"],
        rows,
    )


def cluster():
    which = os.environ.get("PWROTD_BENCH_CLUSTER", "mirror,failover,cost").split(",")
    if "mirror" in which:
        cluster_mirror()
    if "failover" in which:
        cluster_failover(lease="5s")
        cluster_failover(lease="15s")
    if "cost" in which:
        cluster_cost()


if __name__ == "__main__":
    for binary in (PWROTD, SIM):
        if not os.path.exists(binary):
            raise SystemExit(f"{binary} is missing: run cargo build --release first")
    scenarios = {"cpu": cpu, "burst": burst, "raw": raw, "rest": rest, "storm": storm, "cluster": cluster}
    chosen = sys.argv[1:] or ["cpu", "burst", "raw", "rest", "storm"]
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
    for name in chosen:
        scenarios[name]()
