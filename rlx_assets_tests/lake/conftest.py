"""The fault-injecting proxy in front of the local S3 server, for the transfer tests."""

from __future__ import annotations

import pytest

from rlx_assets_tests.servers.fault_proxy import FaultProxy


@pytest.fixture
def proxy(s3_lake, s3_server, monkeypatch):
    """The proxy in front of the local S3 server; the lake is reached through it."""
    fault_proxy = FaultProxy(s3_server.endpoint_url).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", fault_proxy.endpoint_url)
    yield fault_proxy
    fault_proxy.stop()
