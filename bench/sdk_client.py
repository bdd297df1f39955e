#!/usr/bin/env python3
"""The official Alibaba Cloud Python SDK (alibabacloud-polardb20170801) doing ModifyAccountPassword
calls, one after another, against pwrotd-sim: the other side of bench/run.py's CPU comparison.

Usage: sdk_client.py URL ACCESS_KEY_ID ACCESS_KEY_SECRET COUNT   (COUNT 0 measures start-up)
The accounts are those bench/run.py configures: acct-NNNNNN on pc-benchNNNN.
"""

import secrets
import sys

from alibabacloud_polardb20170801 import models
from alibabacloud_polardb20170801.client import Client
from alibabacloud_tea_openapi.models import Config

url, key_id, secret, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = Client(Config(
    access_key_id=key_id, access_key_secret=secret, endpoint=url.split("://", 1)[1],
    protocol="http", region_id="cn-hangzhou", signature_algorithm="v2",
))
for i in range(count):
    password = "Ab1!" + secrets.token_hex(8)
    client.modify_account_password(models.ModifyAccountPasswordRequest(
        dbcluster_id=f"pc-bench{i % 1000:04d}", account_name=f"user{i:06d}", new_account_password=password,
    ))
