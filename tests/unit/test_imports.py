# SPDX-License-Identifier: Apache-2.0
"""What a running agent imports (issue 11, finding 6: RSS). Heavy packages it does not need on its
config stay out of the process: the ``kubernetes`` client without a service account or kubeconfig
(37 MiB), pyroute2's ``__init__`` and what it pulls in (IPDB, NDB with sqlite3; 6.6 MiB), rich
outside ``top``. README.md "Backend outage" has the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

AGENT = """
import json, sys
from otel_kubeskoop.agent import Agent
from otel_kubeskoop.cli import main
from otel_kubeskoop.config import parse
import otel_kubeskoop.netlink.conntrack, otel_kubeskoop.netlink.conntrack.table
import otel_kubeskoop.netlink.sock_diag, otel_kubeskoop.netlink.tc
agent = Agent(parse({"address": "", "metrics": {"probes": [{"name": "udp"}, {"name": "qdisc"}]}}, "t", environ={}))
agent.open()
agent.cycle()
agent.stop()
print(json.dumps({"modules": sorted(sys.modules), "cycles": agent.cycles}))
"""


def test_an_agent_without_api_access_imports_neither_kubernetes_nor_all_of_pyroute2_nor_rich(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")}
    out = subprocess.run([sys.executable, "-c", AGENT], env={**env, "HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=120, check=True)
    got = json.loads(out.stdout.splitlines()[-1])
    modules = set(got["modules"])
    assert got["cycles"] == 1
    assert "pyroute2.netlink.rtnl.tcmsg" in modules  # the message classes the decoders use
    assert not {"kubernetes", "rich", "pyroute2.ndb", "pyroute2.ipdb", "pyroute2.iproute", "sqlite3"} & modules
