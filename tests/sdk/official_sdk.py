#!/usr/bin/env python3
"""Exercise the pwrotd simulator with the OFFICIAL Alibaba Cloud Python SDKs.

Usage: python official_sdk.py <simulator-binary> <config.toml>

Starts the simulator on 127.0.0.1 (port 0), drives it with
alibabacloud-polardb20170801 and alibabacloud-rds20140815 in both signing
modes (SDK default V3 ACS3-HMAC-SHA256, and signature_algorithm='v2' which
selects the V1 HMAC-SHA1 RPC signature), verifies the resulting state through
the simulator's /_sim/accounts test hook, and checks documented error codes:
validation errors, a cluster, instance or account in the wrong state (set through
PUT /_sim/state), and each "may have been applied" error injected after the change
was applied (through POST /_sim/script), whose password must then be live.

DescribeAccounts goes through both SDKs, whose models must parse the replies. Then the
same scenario runs again with STS credentials (AccessKeyId, AccessKeySecret,
SecurityToken), fetched from the simulator by the official credential providers of
alibabacloud_credentials (a dependency of the SDKs): RamRoleArnCredentialsProvider
(AssumeRole, V1-signed), OIDCRoleArnCredentialsProvider (AssumeRoleWithOIDC),
EcsRamRoleCredentialsProvider (the ECS metadata service, IMDSv2) and
URLCredentialsProvider (a credentials URI). The roles are set up through POST
/_sim/cloud. Only the transport is adjusted: the STS providers always use https and the
ECS provider a fixed host, so their requests are sent over http to the simulator, unchanged
otherwise.

Prints one "PASS ..."/"FAIL ..." line per check and a final "N passed, M failed".
Exits non-zero if any check failed.
"""

import hashlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import traceback
import urllib.error
import urllib.request

# Loopback only: make sure no environment proxy diverts SDK or hook traffic.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from Tea.exceptions import TeaException  # noqa: E402
from alibabacloud_tea_openapi.models import Config  # noqa: E402
from alibabacloud_polardb20170801.client import Client as PolarDBClient  # noqa: E402
from alibabacloud_polardb20170801 import models as polardb_models  # noqa: E402
from alibabacloud_rds20140815.client import Client as RdsClient  # noqa: E402
from alibabacloud_rds20140815 import models as rds_models  # noqa: E402
from alibabacloud_credentials.provider import (  # noqa: E402
    EcsRamRoleCredentialsProvider,
    OIDCRoleArnCredentialsProvider,
    RamRoleArnCredentialsProvider,
    URLCredentialsProvider,
)
from Tea.core import TeaCore  # noqa: E402

AK_ID = "LTAIsdktest"
AK_SECRET = "sdk-secret-123"
START_TIMEOUT_S = 20.0

# label -> Config.signature_algorithm (None = SDK default, i.e. V3 ACS3-HMAC-SHA256)
MODES = [("v3-ACS3-HMAC-SHA256", None), ("v1-HMAC-SHA1(signature_algorithm=v2)", "v2")]

RESULTS = {"passed": 0, "failed": 0}


def report(ok, name, detail=""):
    if ok:
        RESULTS["passed"] += 1
        print(f"PASS {name}", flush=True)
    else:
        RESULTS["failed"] += 1
        print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)


def sha256_hex(s):
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- simulator


class Simulator:
    def __init__(self, binary, config):
        self.binary = binary
        self.config = config
        self.proc = None
        self.base = None
        self.stderr_file = None

    def start(self):
        env = dict(os.environ)
        env["ALIBABA_CLOUD_ACCESS_KEY_ID"] = AK_ID
        env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = AK_SECRET
        # stderr goes to a file so the log can never fill a pipe and stall the simulator.
        self.stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [self.binary, "--listen", "127.0.0.1:0", "--config", self.config],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            env=env,
        )
        lines = queue.Queue()

        def pump():
            for raw in self.proc.stdout:
                lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        prefix = "pwrotd-sim listening on "
        try:
            line = lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError(f"simulator printed nothing within {START_TIMEOUT_S:.0f}s")
        if line is None or not line.startswith(prefix):
            raise RuntimeError(f"unexpected simulator stdout: {line!r}; stderr: {self.stderr_tail()}")
        url = line[len(prefix):].strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"simulator is not on loopback: {url!r}")
        self.base = url.rstrip("/")
        return self.base

    @property
    def endpoint(self):
        return self.base[len("http://"):]

    def stderr_tail(self, n=2000):
        if not self.stderr_file:
            return ""
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode("utf-8", "replace")[-n:]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.stderr_file:
            self.stderr_file.close()

    def hook(self, path):
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.base + path, timeout=10) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def send(self, method, path, body):
        """A JSON request to a /_sim/ hook; returns the HTTP status."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(self.base + path, data=json.dumps(body).encode("utf-8"), method=method)
        try:
            with opener.open(request, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code

    def script(self, faults):
        """The next API requests meet these faults, one each (POST /_sim/script)."""
        status = self.send("POST", "/_sim/script", faults)
        if status != 200:
            raise RuntimeError(f"POST /_sim/script answered {status}")

    def set_state(self, **change):
        """A resource's state or an account's status (PUT /_sim/state)."""
        status = self.send("PUT", "/_sim/state", change)
        if status != 200:
            raise RuntimeError(f"PUT /_sim/state {change} answered {status}")

    def account(self, resource_id, account_name):
        for item in self.hook("/_sim/accounts"):
            if item.get("resource_id") == resource_id and item.get("account_name") == account_name:
                return item.get("account", {})
        return None


# --------------------------------------------------------------------------- SDK helpers


# The credentials the scenario signs with: the AccessKey, or STS credentials (run_sts).
CREDENTIALS = {"access_key_id": AK_ID, "access_key_secret": AK_SECRET, "security_token": None}


def make_config(sim, signature_algorithm, secret=None):
    kwargs = dict(
        access_key_id=CREDENTIALS["access_key_id"],
        access_key_secret=secret or CREDENTIALS["access_key_secret"],
        endpoint=sim.endpoint,
        protocol="http",
        region_id="cn-hangzhou",
    )
    if CREDENTIALS["security_token"]:
        kwargs["security_token"] = CREDENTIALS["security_token"]
    if signature_algorithm is not None:
        kwargs["signature_algorithm"] = signature_algorithm
    return Config(**kwargs)


def describe_exc(e):
    if isinstance(e, TeaException):
        return f"{type(e).__name__} code={e.code!r} message={e.message!r} data={e.data!r}"
    return f"{type(e).__name__}: {e}"


def check_ok(name, fn):
    """Call fn(); PASS if it returns without raising. Returns the response or None."""
    try:
        resp = fn()
    except Exception as e:  # noqa: BLE001 - any failure is a FAIL line
        report(False, name, describe_exc(e))
        return None
    status = getattr(resp, "status_code", None)
    body = getattr(resp, "body", None)
    request_id = getattr(body, "request_id", None) if body is not None else None
    if status != 200 or not request_id:
        report(False, name, f"status={status} request_id={request_id!r}")
        return None
    report(True, name)
    return resp


def check_error(name, fn, expected_code, expected_status=None):
    try:
        resp = fn()
    except TeaException as e:
        status = (e.data or {}).get("statusCode") if isinstance(e.data, dict) else None
        ok = e.code == expected_code and (expected_status is None or status == expected_status)
        want = expected_code if expected_status is None else f"{expected_code} (HTTP {expected_status})"
        report(ok, f"{name} -> {want}", "" if ok else f"got {describe_exc(e)}")
        return
    except Exception as e:  # noqa: BLE001
        report(False, f"{name} -> {expected_code}", f"non-Tea exception {describe_exc(e)}")
        return
    report(False, f"{name} -> {expected_code}",
           f"call succeeded (status={getattr(resp, 'status_code', None)})")


def check_password(sim, name, resource_id, account_name, password):
    acct = sim.account(resource_id, account_name)
    got = acct.get("password_sha256") if acct else None
    want = sha256_hex(password)
    report(got == want, f"{name}: state password_sha256 == sha256({password!r})",
           f"got {got!r}, want {want!r}")


def check_unchanged(sim, name, resource_id, account_name, before):
    acct = sim.account(resource_id, account_name)
    got = acct.get("password_sha256") if acct else None
    report(got == before, f"{name}: state password unchanged", f"got {got!r}, before {before!r}")


def current_hash(sim, resource_id, account_name):
    acct = sim.account(resource_id, account_name)
    return acct.get("password_sha256") if acct else None


# --------------------------------------------------------------------------- scenario


def run_mode(sim, label, algo, tag):
    polar = PolarDBClient(make_config(sim, algo))
    rds = RdsClient(make_config(sim, algo))
    p = f"[{label}]"

    # Passwords: all specials from the allowed set, plus literal "%2B"/"%20"
    # sequences to catch double-decoding and '+' vs space confusion.
    pw_modify = f"Ab1!@#$%^&*()_+-={tag}"
    pw_zonal = f"Pa5%2B&x=y+z{tag}"
    pw_zonal_other = f"Qq7+%20=&*{tag}!"
    pw_reset = f"Zy9=-+_)(*&^%$#@!{tag}"
    pw_rds = f"Rd{tag}s+%20&=*()!x"

    # --- success paths -----------------------------------------------------
    name = f"{p} polardb ModifyAccountPassword pc-sdk0001/app"
    if check_ok(name, lambda: polar.modify_account_password(polardb_models.ModifyAccountPasswordRequest(
            dbcluster_id="pc-sdk0001", account_name="app", new_account_password=pw_modify))):
        check_password(sim, name, "pc-sdk0001", "app", pw_modify)

    token = f"sdk-token-{tag}-0001"
    name = f"{p} polardb ModifyAccountPasswordZonal pc-sdk0002/edge ClientToken={token}"
    if check_ok(name, lambda: polar.modify_account_password_zonal(polardb_models.ModifyAccountPasswordZonalRequest(
            dbcluster_id="pc-sdk0002", account_name="edge", new_account_password=pw_zonal, client_token=token))):
        check_password(sim, name, "pc-sdk0002", "edge", pw_zonal)

    name = f"{p} polardb ResetAccount pc-sdk0001/root_admin"
    if check_ok(name, lambda: polar.reset_account(polardb_models.ResetAccountRequest(
            dbcluster_id="pc-sdk0001", account_name="root_admin", account_password=pw_reset))):
        check_password(sim, name, "pc-sdk0001", "root_admin", pw_reset)

    name = f"{p} polardb GrantAccountPrivilege pc-sdk0001/app orders=ReadOnly"
    if check_ok(name, lambda: polar.grant_account_privilege(polardb_models.GrantAccountPrivilegeRequest(
            dbcluster_id="pc-sdk0001", account_name="app", dbname="orders", account_privilege="ReadOnly"))):
        acct = sim.account("pc-sdk0001", "app") or {}
        privs = acct.get("privileges") or {}
        report(privs.get("orders") == "ReadOnly", f"{name}: state privileges[orders] == ReadOnly",
               f"privileges={privs!r}")

    name = f"{p} rds ResetAccountPassword rm-sdk0001/billing"
    if check_ok(name, lambda: rds.reset_account_password(rds_models.ResetAccountPasswordRequest(
            dbinstance_id="rm-sdk0001", account_name="billing", account_password=pw_rds))):
        check_password(sim, name, "rm-sdk0001", "billing", pw_rds)

    # --- documented errors -------------------------------------------------
    bad_polar = PolarDBClient(make_config(sim, algo, secret="wrong-secret-456"))
    bad_rds = RdsClient(make_config(sim, algo, secret="wrong-secret-456"))

    before = current_hash(sim, "pc-sdk0001", "app")
    name = f"{p} polardb ModifyAccountPassword with wrong AccessKey secret"
    check_error(name, lambda: bad_polar.modify_account_password(polardb_models.ModifyAccountPasswordRequest(
        dbcluster_id="pc-sdk0001", account_name="app", new_account_password=f"Wr0ng!Secret{tag}")),
        "SignatureDoesNotMatch")
    check_unchanged(sim, name, "pc-sdk0001", "app", before)

    before = current_hash(sim, "rm-sdk0001", "billing")
    name = f"{p} rds ResetAccountPassword with wrong AccessKey secret"
    check_error(name, lambda: bad_rds.reset_account_password(rds_models.ResetAccountPasswordRequest(
        dbinstance_id="rm-sdk0001", account_name="billing", account_password=f"Wr0ng!Secret{tag}")),
        "SignatureDoesNotMatch")
    check_unchanged(sim, name, "rm-sdk0001", "billing", before)

    before = current_hash(sim, "pc-sdk0001", "app")
    name = f"{p} polardb ModifyAccountPassword password='short'"
    check_error(name, lambda: polar.modify_account_password(polardb_models.ModifyAccountPasswordRequest(
        dbcluster_id="pc-sdk0001", account_name="app", new_account_password="short")),
        "InvalidAccountPassword.Malformed")
    check_unchanged(sim, name, "pc-sdk0001", "app", before)

    before = current_hash(sim, "rm-sdk0001", "billing")
    name = f"{p} rds ResetAccountPassword password='short'"
    check_error(name, lambda: rds.reset_account_password(rds_models.ResetAccountPasswordRequest(
        dbinstance_id="rm-sdk0001", account_name="billing", account_password="short")),
        "InvalidAccountPassword.Format")
    check_unchanged(sim, name, "rm-sdk0001", "billing", before)

    name = f"{p} polardb ModifyAccountPassword unknown cluster pc-nope"
    check_error(name, lambda: polar.modify_account_password(polardb_models.ModifyAccountPasswordRequest(
        dbcluster_id="pc-nope", account_name="app", new_account_password=f"N0pe!Cluster{tag}")),
        "InvalidDBClusterId.NotFound")

    name = f"{p} rds ResetAccountPassword unknown instance rm-nope"
    check_error(name, lambda: rds.reset_account_password(rds_models.ResetAccountPasswordRequest(
        dbinstance_id="rm-nope", account_name="billing", account_password=f"N0pe!Instance{tag}")),
        "InvalidDBInstanceName.NotFound", 404)

    before = current_hash(sim, "pc-sdk0001", "app")
    name = f"{p} polardb ResetAccount on normal account pc-sdk0001/app"
    check_error(name, lambda: polar.reset_account(polardb_models.ResetAccountRequest(
        dbcluster_id="pc-sdk0001", account_name="app", account_password=f"N0t!Super{tag}")),
        "IncorrectAccountPrivilegeType")
    check_unchanged(sim, name, "pc-sdk0001", "app", before)

    before = current_hash(sim, "pc-sdk0002", "edge")
    name = f"{p} polardb ModifyAccountPasswordZonal reused ClientToken={token} with different password"
    check_error(name, lambda: polar.modify_account_password_zonal(polardb_models.ModifyAccountPasswordZonalRequest(
        dbcluster_id="pc-sdk0002", account_name="edge", new_account_password=pw_zonal_other, client_token=token)),
        "IdempotentParameterMismatch")
    check_unchanged(sim, name, "pc-sdk0002", "edge", before)


# Each "may have been applied" fault: (name for POST /_sim/script, documented code, HTTP status).
ERRORS_AFTER_APPLY = [
    ("service_unavailable", "ServiceUnavailable", 503),
    ("internal_error", "InternalError", 500),
    ("lock_timeout", "LockTimeout", 400),
    ("database_connect_error", "Database.ConnectError", 400),
    ("account_update_error", "Account.UpdateError", 400),
    ("db_operation_failed", "Lost connection to MySQL server during query", 400),
    ("unknown", "SomethingNew.Unknown", 400),
]


def run_documented_refusals(sim, label, algo, tag):
    """The documented refusals of a resource or account in the wrong state: nothing applied."""
    polar = PolarDBClient(make_config(sim, algo))
    rds = RdsClient(make_config(sim, algo))
    p = f"[{label}]"

    name = f"{p} polardb ModifyAccountPassword AccountName='Bad-Name'"
    check_error(name, lambda: polar.modify_account_password(polardb_models.ModifyAccountPasswordRequest(
        dbcluster_id="pc-sdk0001", account_name="Bad-Name", new_account_password=f"Mal!formed{tag}x")),
        "InvalidAccountName.Malformed", 400)

    before = current_hash(sim, "pc-sdk0002", "edge")
    sim.set_state(service="polardb", resource_id="pc-sdk0002", state="ClassChanging")
    name = f"{p} polardb ModifyAccountPasswordZonal on a ClassChanging cluster"
    try:
        check_error(name, lambda: polar.modify_account_password_zonal(polardb_models.ModifyAccountPasswordZonalRequest(
            dbcluster_id="pc-sdk0002", account_name="edge", new_account_password=f"St4te!Cluster{tag}",
            client_token=f"sdk-state-{tag}")),
            "IncorrectDBClusterState", 403)
    finally:
        sim.set_state(service="polardb", resource_id="pc-sdk0002", state="Running")
    check_unchanged(sim, name, "pc-sdk0002", "edge", before)

    before = current_hash(sim, "rm-sdk0001", "billing")
    sim.set_state(service="rds", resource_id="rm-sdk0001", state="Rebooting")
    name = f"{p} rds ResetAccountPassword on a Rebooting instance"
    try:
        check_error(name, lambda: rds.reset_account_password(rds_models.ResetAccountPasswordRequest(
            dbinstance_id="rm-sdk0001", account_name="billing", account_password=f"St4te!Instance{tag}")),
            "IncorrectDBInstanceState", 403)
    finally:
        sim.set_state(service="rds", resource_id="rm-sdk0001", state="Running")
    check_unchanged(sim, name, "rm-sdk0001", "billing", before)

    sim.set_state(service="rds", resource_id="rm-sdk0001", account_name="billing", status="Locked")
    name = f"{p} rds ResetAccountPassword on a locked account"
    try:
        check_error(name, lambda: rds.reset_account_password(rds_models.ResetAccountPasswordRequest(
            dbinstance_id="rm-sdk0001", account_name="billing", account_password=f"L0cked!Acct{tag}")),
            "IncorrectAccountStatus", 400)
    finally:
        sim.set_state(service="rds", resource_id="rm-sdk0001", account_name="billing", status="Available")
    check_unchanged(sim, name, "rm-sdk0001", "billing", before)

    name = f"{p} polardb GrantAccountPrivilege to the privileged account root_admin"
    check_error(name, lambda: polar.grant_account_privilege(polardb_models.GrantAccountPrivilegeRequest(
        dbcluster_id="pc-sdk0001", account_name="root_admin", dbname="orders", account_privilege="ReadOnly")),
        "IncorrectAccountPrivilegeType", 403)
    acct = sim.account("pc-sdk0001", "root_admin") or {}
    report(not acct.get("privileges"), f"{name}: state privileges unchanged", f"privileges={acct.get('privileges')!r}")


def run_errors_after_apply(sim, label, algo, tag):
    """Each documented "may have been applied" error, injected after the change: the SDK sees
    the error, and the password is nevertheless live."""
    polar = PolarDBClient(make_config(sim, algo))
    rds = RdsClient(make_config(sim, algo))
    p = f"[{label}]"
    for i, (fault, code, status) in enumerate(ERRORS_AFTER_APPLY):
        pw = f"Ap{i}plied!{tag}xyz"
        sim.script([{"error_after_apply": fault}])
        name = f"{p} rds ResetAccountPassword, applied then {fault}"
        check_error(name, lambda: rds.reset_account_password(rds_models.ResetAccountPasswordRequest(
            dbinstance_id="rm-sdk0001", account_name="billing", account_password=pw)), code, status)
        check_password(sim, name, "rm-sdk0001", "billing", pw)

        pw = f"Po{i}lar!Applied{tag}"
        sim.script([{"error_after_apply": fault}])
        name = f"{p} polardb ModifyAccountPassword, applied then {fault}"
        check_error(name, lambda: polar.modify_account_password(polardb_models.ModifyAccountPasswordRequest(
            dbcluster_id="pc-sdk0001", account_name="app", new_account_password=pw)), code, status)
        check_password(sim, name, "pc-sdk0001", "app", pw)

    privilege = "ReadWrite"
    sim.script([{"error_after_apply": "lock_timeout"}])
    name = f"{p} polardb GrantAccountPrivilege, applied then lock_timeout"
    check_error(name, lambda: polar.grant_account_privilege(polardb_models.GrantAccountPrivilegeRequest(
        dbcluster_id="pc-sdk0001", account_name="app", dbname="orders", account_privilege=privilege)),
        "LockTimeout", 400)
    privs = (sim.account("pc-sdk0001", "app") or {}).get("privileges") or {}
    report(privs.get("orders") == privilege, f"{name}: state privileges[orders] == {privilege}", f"privileges={privs!r}")


# --------------------------------------------------------------------------- DescribeAccounts


def run_describe_accounts(sim, label, algo):
    """DescribeAccounts through each SDK: the models parse the replies, the accounts are there."""
    polar = PolarDBClient(make_config(sim, algo))
    rds = RdsClient(make_config(sim, algo))
    p = f"[{label}]"

    name = f"{p} polardb DescribeAccounts pc-sdk0001"
    resp = check_ok(name, lambda: polar.describe_accounts(polardb_models.DescribeAccountsRequest(
        dbcluster_id="pc-sdk0001")))
    if resp:
        accounts = {a.account_name: a for a in resp.body.accounts or []}
        app, admin = accounts.get("app"), accounts.get("root_admin")
        report(app is not None and app.account_type == "Normal" and app.account_lock_state == "UnLock"
               and app.account_status == "Available",
               f"{name}: app is a Normal, Available, UnLock account", f"accounts={resp.body.to_map()!r}")
        report(admin is not None and admin.account_type == "Super", f"{name}: root_admin is Super",
               f"accounts={resp.body.to_map()!r}")
        privs = {d.dbname: d.account_privilege for d in (app.database_privileges or [])} if app else {}
        report("orders" in privs, f"{name}: app lists its privilege on orders", f"privileges={privs!r}")

    name = f"{p} rds DescribeAccounts rm-sdk0001"
    resp = check_ok(name, lambda: rds.describe_accounts(rds_models.DescribeAccountsRequest(
        dbinstance_id="rm-sdk0001")))
    if resp:
        listed = resp.body.accounts.dbinstance_account if resp.body.accounts else []
        names = [a.account_name for a in listed or []]
        report(names == ["billing"] and listed[0].account_status == "Available"
               and listed[0].account_type == "Normal",
               f"{name}: billing, Normal, Available", f"body={resp.body.to_map()!r}")

    name = f"{p} polardb DescribeAccounts unknown cluster pc-nope"
    check_error(name, lambda: polar.describe_accounts(polardb_models.DescribeAccountsRequest(
        dbcluster_id="pc-nope")), "InvalidDBClusterId.NotFound")
    name = f"{p} rds DescribeAccounts unknown instance rm-nope"
    check_error(name, lambda: rds.describe_accounts(rds_models.DescribeAccountsRequest(
        dbinstance_id="rm-nope")), "InvalidDBInstanceName.NotFound", 404)


# --------------------------------------------------------------------------- STS credentials

ROLE_ARN = "acs:ram::1234567890123456:role/pwrotd-sdk"
OIDC_PROVIDER_ARN = "acs:ram::1234567890123456:oidc-provider/ack-sdk"
OIDC_ISSUER = "https://oidc-ack.example/sdk"


def cloud_setup():
    """The POST /_sim/cloud body: a role the primary account's RAM user may assume, trusted
    by an OIDC provider too, attached to the ECS instance and served at /_creds/sdk."""
    return {
        "role": [{
            "arn": ROLE_ARN,
            "trust_accounts": ["1234567890123456"],
            "trust_oidc_providers": [OIDC_PROVIDER_ARN],
        }],
        "oidc_provider": [{"arn": OIDC_PROVIDER_ARN, "issuer": OIDC_ISSUER, "client_ids": ["sts.aliyuncs.com"]}],
        "ecs": {"role": ROLE_ARN},
        "credentials_uri": [{"name": "sdk", "role": ROLE_ARN}],
    }


def unsigned_jwt(issuer, audience, lifetime_s):
    """A JWT with these claims and no real signature: the simulator reads the claims only."""
    import base64
    import time

    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": "system:serviceaccount:db:pwrotd", "iat": now,
              "exp": now + lifetime_s}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{part({'sig': 'none'})}"


class OverHttp:
    """Within it, the SDK's requests to the simulator go over http instead of https (the STS
    providers hard-code https); nothing else about them changes."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.original = None

    def __enter__(self):
        self.original = TeaCore.do_action
        original, endpoint = self.original, self.endpoint

        def do_action(request, runtime_option=None):
            if request.headers.get("host") == endpoint:
                request.protocol = "http"
            return original(request, runtime_option)

        TeaCore.do_action = staticmethod(do_action)
        return self

    def __exit__(self, *exc):
        TeaCore.do_action = self.original
        return False


def sts_credentials(sim, tmpdir):
    """label -> (AccessKeyId, AccessKeySecret, SecurityToken), from each official provider."""
    token_file = os.path.join(tmpdir, "oidc-token")
    with open(token_file, "w") as f:
        f.write(unsigned_jwt(OIDC_ISSUER, "sts.aliyuncs.com", 600))
    ecs = EcsRamRoleCredentialsProvider(disable_imds_v1=True, async_update_enabled=False)
    ecs._EcsRamRoleCredentialsProvider__metadata_service_host = sim.endpoint
    providers = [
        ("AssumeRole", RamRoleArnCredentialsProvider(
            access_key_id=AK_ID, access_key_secret=AK_SECRET, role_arn=ROLE_ARN,
            role_session_name="sdk-session", duration_seconds=900, sts_endpoint=sim.endpoint)),
        ("AssumeRoleWithOIDC", OIDCRoleArnCredentialsProvider(
            role_arn=ROLE_ARN, oidc_provider_arn=OIDC_PROVIDER_ARN, oidc_token_file_path=token_file,
            role_session_name="sdk-oidc", sts_endpoint=sim.endpoint)),
        ("ECS metadata", ecs),
        ("credentials URI", URLCredentialsProvider(uri=f"{sim.base}/_creds/sdk")),
    ]
    out = {}
    for label, provider in providers:
        name = f"credentials from {label} ({type(provider).__name__})"
        try:
            with OverHttp(sim.endpoint):
                c = provider.get_credentials()
            ok = c.get_access_key_id().startswith("STS.") and bool(c.get_security_token())
            report(ok, name, f"access_key_id={c.get_access_key_id()!r}")
            if ok:
                out[label] = (c.get_access_key_id(), c.get_access_key_secret(), c.get_security_token())
        except Exception as e:  # noqa: BLE001
            report(False, name, describe_exc(e))
    return out


def run_sts(sim):
    """The scenario again, signed with STS credentials from AssumeRole; DescribeAccounts with
    the credentials of every other source."""
    status = sim.send("POST", "/_sim/cloud", cloud_setup())
    report(status == 200, "POST /_sim/cloud sets up the role, OIDC provider, ECS role and URI", f"status={status}")
    with tempfile.TemporaryDirectory() as tmpdir:
        sources = sts_credentials(sim, tmpdir)
    try:
        for source, (key_id, secret, token) in sources.items():
            CREDENTIALS.update(access_key_id=key_id, access_key_secret=secret, security_token=token)
            for label, algo in MODES:
                tag = ("S3" if algo is None else "S2") + str(len(source))
                full = f"STS from {source}, {label}"
                try:
                    if source == "AssumeRole":
                        run_mode(sim, full, algo, tag)
                        run_documented_refusals(sim, full, algo, tag)
                    run_describe_accounts(sim, full, algo)
                except Exception:  # noqa: BLE001
                    report(False, f"[{full}] scenario crashed", traceback.format_exc().replace("\n", " | "))
        if "AssumeRole" in sources:
            key_id, secret, _ = sources["AssumeRole"]
            CREDENTIALS.update(access_key_id=key_id, access_key_secret=secret, security_token="CAISnot-the-token")
            polar = PolarDBClient(make_config(sim, None))
            check_error("[STS] polardb DescribeAccounts with another SecurityToken",
                        lambda: polar.describe_accounts(polardb_models.DescribeAccountsRequest(dbcluster_id="pc-sdk0001")),
                        "InvalidSecurityToken.MismatchWithAccessKey", 400)
    finally:
        CREDENTIALS.update(access_key_id=AK_ID, access_key_secret=AK_SECRET, security_token=None)



def main(argv):
    if len(argv) != 3:
        print(f"usage: {argv[0]} <simulator-binary> <config.toml>", file=sys.stderr)
        return 2
    sim = Simulator(argv[1], argv[2])
    try:
        try:
            base = sim.start()
            report(True, f"simulator started at {base}/")
        except Exception as e:  # noqa: BLE001
            report(False, "simulator start", str(e))
            return 1
        for label, algo in MODES:
            tag = "3" if algo is None else "2"
            try:
                run_mode(sim, label, algo, tag)
                run_documented_refusals(sim, label, algo, tag)
                run_errors_after_apply(sim, label, algo, tag)
                run_describe_accounts(sim, label, algo)
            except Exception:  # noqa: BLE001 - an unexpected crash is a failure, not an abort
                report(False, f"[{label}] scenario crashed", traceback.format_exc().replace("\n", " | "))
        try:
            run_sts(sim)
        except Exception:  # noqa: BLE001
            report(False, "STS scenario crashed", traceback.format_exc().replace("\n", " | "))
        try:
            stats = sim.hook("/_sim/stats")
            print(f"INFO simulator stats: {json.dumps(stats, sort_keys=True)}", flush=True)
            applied_errors = sum((stats.get("error_after_apply") or {}).values())
            want = 2 * (2 * len(ERRORS_AFTER_APPLY) + 1)
            report(applied_errors == want, f"/_sim/stats error_after_apply counts {want} applied-then-error replies",
                   f"got {applied_errors}")
        except Exception as e:  # noqa: BLE001
            print(f"INFO simulator stats unavailable: {e}", flush=True)
    finally:
        sim.stop()
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed", flush=True)
    return 1 if RESULTS["failed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
