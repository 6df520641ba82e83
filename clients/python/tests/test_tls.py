"""TLS: a 3-node cluster serving mutual TLS (client certificates optional, node-only
calls for CN ctxstore-node), reached with and without a client certificate, and
refused to plaintext clients and to clients trusting another CA."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import ctxstore
from ctxstore import ClientTls

from conftest import Cluster, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_cluster(certs):
    c = Cluster(3, 2, tls=certs)
    try:
        yield c
    finally:
        c.stop()


def mutual(certs: Path) -> ClientTls:
    return ClientTls(certs / "ca.crt", cert_path=certs / "client.crt", key_path=certs / "client.key")


def ca_only(certs: Path) -> ClientTls:
    return ClientTls(str(certs / "ca.crt"))


#: A failing client's settings: one short deadline for the call and for each
#: routing-table request.
FAST_FAIL = ctxstore.Options(timeout=2.0, routing_timeout=1.0)


@pytest.mark.parametrize("make_tls", [mutual, ca_only], ids=["client-cert", "ca-only"])
def test_put_get_over_tls(tls_cluster, certs, uniq, make_tls):
    k = f"{uniq}/k"
    with ctxstore.Client(tls_cluster.addrs, tls=make_tls(certs)) as c:
        w = c.put(k, "secret")
        kv = c.get(k)
        assert kv is not None and (kv.value, kv.version) == (b"secret", w.version)
        assert len(c.shards()) == 2


@pytest.mark.parametrize("make_tls", [mutual, ca_only], ids=["client-cert", "ca-only"])
async def test_async_put_get_over_tls(tls_cluster, certs, uniq, make_tls):
    k = f"{uniq}/k"
    async with ctxstore.AsyncClient(tls_cluster.addrs, tls=make_tls(certs)) as c:
        w = await c.put(k, "secret")
        kv = await c.get(k)
        assert kv is not None and (kv.value, kv.version) == (b"secret", w.version)


def test_tls_through_options_and_domain(tls_cluster, certs, uniq):
    # The node certificate names localhost too: checking that name instead of the
    # dialled 127.0.0.1 works, a name it does not carry fails.
    opts = ctxstore.Options(timeout=5.0, tls=ClientTls(certs / "ca.crt", domain="localhost"))
    with ctxstore.Client(tls_cluster.addrs, options=opts) as c:
        c.put(f"{uniq}/k", "v")
        assert c.get(f"{uniq}/k").value == b"v"
    wrong = ClientTls(certs / "ca.crt", domain="elsewhere.example")
    with ctxstore.Client(tls_cluster.addrs, tls=wrong, options=FAST_FAIL) as c:
        with pytest.raises(ctxstore.CtxstoreError):
            c.get(f"{uniq}/k")


def test_plaintext_client_is_refused(tls_cluster, certs, uniq):
    k = f"{uniq}/k"
    start = time.monotonic()
    with ctxstore.Client(tls_cluster.addrs, options=FAST_FAIL) as c:
        with pytest.raises(ctxstore.CtxstoreError):
            c.put(k, "plain")
    assert time.monotonic() - start < 10
    with tls_cluster.client() as c:
        assert c.get(k) is None, "nothing was written"


async def test_async_plaintext_client_is_refused(tls_cluster, uniq):
    async with ctxstore.AsyncClient(tls_cluster.addrs, options=FAST_FAIL) as c:
        with pytest.raises(ctxstore.CtxstoreError):
            await c.put(f"{uniq}/k", "plain")


def test_client_trusting_another_ca_is_refused(tls_cluster, tmp_path, uniq):
    other = make_certs(tmp_path / "other")
    k = f"{uniq}/k"
    start = time.monotonic()
    for tls in (ClientTls(other / "ca.crt"), mutual(other)):
        with ctxstore.Client(tls_cluster.addrs, tls=tls, options=FAST_FAIL) as c:
            with pytest.raises(ctxstore.CtxstoreError):
                c.put(k, "other")
    assert time.monotonic() - start < 20
    with tls_cluster.client() as c:
        assert c.get(k) is None, "nothing was written"


# ---- settings checked without a cluster ----


def test_missing_files_name_the_file(certs, tmp_path):
    missing = tmp_path / "nope.crt"
    for make in (ctxstore.Client, ctxstore.AsyncClient):
        with pytest.raises(ctxstore.InvalidArgumentError) as e:
            make(["127.0.0.1:1"], tls=ClientTls(missing))
        assert e.value.field == "ca_path" and str(missing) in str(e.value)
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        ctxstore.Client(["127.0.0.1:1"], tls=ClientTls(certs / "ca.crt", cert_path=missing, key_path=certs / "client.key"))
    assert e.value.field == "cert_path" and str(missing) in str(e.value)
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        ctxstore.Client(["127.0.0.1:1"], tls=ClientTls(certs / "ca.crt", cert_path=certs / "client.crt", key_path=missing))
    assert e.value.field == "key_path" and str(missing) in str(e.value)
    empty = tmp_path / "empty.crt"
    empty.write_text("not a certificate\n")
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        ctxstore.Client(["127.0.0.1:1"], tls=ClientTls(empty))
    assert e.value.field == "ca_path" and "no PEM block" in str(e.value)


def test_cert_and_key_go_together(certs):
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        ClientTls(certs / "ca.crt", cert_path=certs / "client.crt")
    assert e.value.field == "key_path"
    with pytest.raises(ctxstore.InvalidArgumentError) as e:
        ClientTls(certs / "ca.crt", key_path=certs / "client.key")
    assert e.value.field == "cert_path"


def test_files_are_read_for_each_new_channel(certs, tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_bytes((certs / "ca.crt").read_bytes())
    c = ctxstore.Client(["127.0.0.1:1"], tls=ClientTls(ca))
    try:
        ca.unlink()
        with pytest.raises(ctxstore.InvalidArgumentError) as e:
            c.get("k")
        assert e.value.field == "ca_path"
    finally:
        c.close()
