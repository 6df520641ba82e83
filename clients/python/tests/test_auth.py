"""Auth from Python: a mutual-TLS cluster with auth turned on by ``ctxctl auth``
(root user, tenant ``a``); the sync and asyncio clients with a tenant's token reach
its own keys and conversations, get ``PermissionDeniedError`` for another tenant's,
and ``UnauthenticatedError`` without a token or with a bad one; a token without TLS
is refused before any call."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import ctxstore
from ctxstore import pb
from ctxstore import ClientTls

from conftest import Cluster, ctxd_bin, make_certs


def ctxctl(cluster: Cluster, certs: Path, *args: str, token: str | None = None) -> str:
    """Runs ``ctxctl`` (beside ``ctxd``) against the cluster; its stdout."""
    env = dict(os.environ)
    env.pop("CTXCTL_TOKEN", None)
    if token is not None:
        env["CTXCTL_TOKEN"] = token
    r = subprocess.run(
        [
            str(ctxd_bin().with_name("ctxctl")),
            "--endpoints", ",".join(cluster.addrs),
            "--cacert", str(certs / "ca.crt"),
            "--cert", str(certs / "client.crt"),
            "--key", str(certs / "client.key"),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # An add whose first answer was lost (a meta election while the cluster starts)
    # and that ctxctl sent again reports "exists": it took effect.
    if r.returncode == 4 and "exists" in r.stderr and "add" in args:
        return r.stdout
    assert r.returncode == 0, f"ctxctl {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    return make_certs(tmp_path_factory.mktemp("auth"))


@pytest.fixture(scope="module")
def secured(certs):
    """(cluster, root token, tenant a's token), auth on."""
    c = Cluster(3, 2, tls=certs)
    try:
        ctxctl(c, certs, "auth", "user", "add", "root")
        ctxctl(c, certs, "auth", "user", "grant", "root", "root")
        root = ctxctl(c, certs, "auth", "token", "create", "root").strip()
        a = ctxctl(c, certs, "auth", "tenant", "add", "a").strip()
        ctxctl(c, certs, "auth", "tenant", "add", "b")
        ctxctl(c, certs, "auth", "enable", token=root)
        yield c, root, a
    finally:
        c.stop()


def ca_only(certs: Path) -> ClientTls:
    return ClientTls(certs / "ca.crt")


FAST_FAIL = ctxstore.Options(timeout=3.0, routing_timeout=1.0)


def test_a_tenant_token_reaches_its_own_data_only(secured, certs, uniq):
    cluster, root, a = secured
    with ctxstore.Client(cluster.addrs, tls=ca_only(certs), token=root) as r:
        r.put(f"b/{uniq}", "b's")
        r.append("b", uniq, [{"role": "user", "content": "hi"}])
    with ctxstore.Client(cluster.addrs, tls=ca_only(certs), token=a) as c:
        c.put(f"a/{uniq}", "mine")
        assert c.get(f"a/{uniq}").value == b"mine"
        c.append("a", uniq, [{"role": "user", "content": "hi"}])
        for call in (
            lambda: c.get(f"b/{uniq}"),
            lambda: c.get(f"b/{uniq}-missing"),
            lambda: c.put(f"b/{uniq}", "overwrite"),
            lambda: c.scan(""),
            lambda: c.read("b", uniq),
        ):
            with pytest.raises(ctxstore.PermissionDeniedError):
                call()
    with ctxstore.Client(cluster.addrs, tls=ca_only(certs), token=root) as r:
        assert r.get(f"b/{uniq}").value == b"b's"


async def test_async_client_with_a_token(secured, certs, uniq):
    cluster, _, a = secured
    async with ctxstore.AsyncClient(cluster.addrs, tls=ca_only(certs), token=a) as c:
        await c.put(f"a/{uniq}", "v")
        assert (await c.get(f"a/{uniq}")).value == b"v"
        with pytest.raises(ctxstore.PermissionDeniedError):
            await c.get(f"b/{uniq}")


def test_no_token_or_a_bad_one_is_unauthenticated(secured, certs, uniq):
    cluster, _, a = secured
    messages = []
    for token in (None, a[:-1] + ("0" if a[-1] != "0" else "1"), "ctx_" + "0" * 16 + a[20:]):
        with ctxstore.Client(cluster.addrs, tls=ca_only(certs), token=token, options=FAST_FAIL) as c:
            with pytest.raises(ctxstore.UnauthenticatedError) as e:
                c.get(f"a/{uniq}")
            messages.append(str(e.value))
    assert messages[1] == messages[2], "an unknown token and a wrong secret look the same"


def test_a_token_needs_tls(secured):
    cluster, _, a = secured
    with pytest.raises(ctxstore.InvalidArgumentError):
        ctxstore.Client(cluster.addrs, token=a)


def test_tenant_namespaces_for_threads_and_models(secured, certs, uniq):
    cluster, root, a = secured
    cp = lambda cid: pb.Checkpoint(checkpoint_id=cid, checkpoint=cid.encode())  # noqa: E731
    with ctxstore.Client(cluster.addrs, tls=ca_only(certs), token=a) as c:
        c.put_checkpoint(uniq, "", cp("mine"), namespace="a")
        got = c.get_checkpoint(uniq, namespace="a")
        assert got.checkpoint.checkpoint_id == "mine"
        assert (got.thread.namespace, got.thread.thread) == ("a", uniq)
        c.put_model({"name": uniq, "provider": "p"}, namespace="a")
        assert [m.name for m in c.list_models(namespace="a")] == [uniq]
        with pytest.raises(ctxstore.PermissionDeniedError):
            c.get_checkpoint(uniq, namespace="b")
        with pytest.raises(ctxstore.PermissionDeniedError):
            c.list_models(namespace="b")
        # Its own namespace's threads, not another's nor the default namespace's.
        assert uniq in [t.thread for t in c.list_threads("a", limit=1000).threads]
        for other in ("b", ""):
            with pytest.raises(ctxstore.PermissionDeniedError):
                c.list_threads(other)
    with ctxstore.Client(cluster.addrs, tls=ca_only(certs), token=root) as r:
        # The same thread id in namespace b and in the default namespace: other threads.
        assert r.get_checkpoint(uniq, namespace="b") is None
        assert r.get_checkpoint(uniq) is None
        r.put_checkpoint(uniq, "", cp("theirs"), namespace="b")
        assert r.get_checkpoint(uniq, namespace="a").checkpoint.checkpoint_id == "mine"
        assert r.get_checkpoint(uniq, namespace="b").checkpoint.checkpoint_id == "theirs"
        assert uniq not in [m.name for m in r.list_models()]
        assert r.delete_thread(uniq, namespace="b")
        assert r.get_checkpoint(uniq, namespace="a") is not None
