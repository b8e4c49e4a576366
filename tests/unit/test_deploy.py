"""The deployment files agree with the code: docker-compose.yml, docker/, deploy/cloudrun/.

Every setting trawl/settings.py reads, and every other variable the code reads from the
environment, is set for each deployed process, or is listed below as deliberately left to
its default, with the reason. The names come from the code, so a new setting fails here
until the deployments have been considered. deploy.sh runs against a stand-in `gcloud`:
the Pub/Sub subscription it makes must have the settings the processes are given.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from trawl.settings import Settings, env_name, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
CLOUDRUN = ROOT / "deploy" / "cloudrun"
DEPLOY_SH = CLOUDRUN / "deploy.sh"
DOCKERFILES = {
    "orchestrator": ROOT / "docker" / "orchestrator.Dockerfile",
    "worker": ROOT / "docker" / "worker.Dockerfile",
}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES: list[str] = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
DEFAULTS = Settings()

# Read by Google's client libraries, not by our code: set to the emulators in compose, and
# never set on Cloud Run (set there, they would point the clients at nothing).
EMULATOR_ENV = {
    "PUBSUB_EMULATOR_HOST": "google-cloud-pubsub talks to the emulator at this address",
    "STORAGE_EMULATOR_HOST": "make_storage_client() talks to the emulator at this address",
}
# Modules that read os.environ as a whole rather than by name, and why that is covered.
BULK_ENV_READERS = {
    "trawl/settings.py": "load_settings() reads the Settings fields from it: checked by name",
    "trawl/secrets_commands.py": "trawl run reads TRAWL_SECRET_<NAME> for the secrets its "
    "workflow names: a user's own machine, never a deployed process",
}

# Settings deliberately left to their defaults, per deployed process, with the reason.
_EVERYWHERE = {
    "TRAWL_WORKER_ID": "each process names itself (hostname-pid-random); one fixed name "
    "would make scaled workers write each other's part files",
    "OTEL_SDK_DISABLED": "OpenTelemetry's standard switch; telemetry is already off without "
    "an endpoint",
}
# Limits and tunings with safe defaults: a deployment sets them only to change them.
_TUNABLE = {
    **{
        env_name(field): "a ceiling on what a workflow may ask for; docs/tenants.md"
        for field in Settings.__struct_fields__
        if field.startswith("ceiling_")
    },
    **dict.fromkeys(
        (
            "TRAWL_API_REQUESTS_PER_S",
            "TRAWL_API_BURST",
            "TRAWL_PREVIEWS_PER_S",
            "TRAWL_PREVIEW_BURST",
            "TRAWL_PREVIEWS_AT_ONCE",
            "TRAWL_STREAMS_AT_ONCE",
            "TRAWL_ADMISSIONS_AT_ONCE",
        ),
        "an API quota with a safe default; docs/tenants.md",
    ),
    "TRAWL_REDACT_QUERY_PARAMS": "empty: the built-in list of token-like names is masked",
    "TRAWL_HOST_MAX_RPS": "0: no ceiling per host beyond each execution's politeness; "
    "docs/tenants.md",
    "TRAWL_HOST_MAX_CONCURRENCY": "only with TRAWL_HOST_MAX_RPS; docs/tenants.md",
    "TRAWL_QUEUE_WINDOW": "fair sharing between executions (1000 tasks queued each); "
    "docs/tenants.md",
    "TRAWL_COUNTER_SHARDS": "an execution's counters spread over 16 rows; 1 only while "
    "workers of a version before migration 0011 run; docs/operations.md",
    "TRAWL_BACKEND_OUTAGE_S": "how long a backend may be down before a worker exits (300 s); "
    "docs/operations.md",
    "TRAWL_RECONCILE_AFTER_S": "when lost tasks are re-published (300 s); docs/distributed.md",
    "TRAWL_STALL_AFTER_S": "when an execution shows as stalled (180 s); docs/distributed.md",
    "TRAWL_WEBHOOK_SECRET": "a secret: unset, webhooks are refused; an operator who wants "
    "them sets it (from a secret store) on the orchestrator and the workers; docs/webhooks.md",
    "TRAWL_WEBHOOK_MAX_ATTEMPTS": "attempts of a webhook call (8); docs/webhooks.md",
    "TRAWL_EXPORT_FILE_BYTES": "dataset files rolled at 64 MiB of JSON; docs/exports.md",
    "TRAWL_EXPORT_CSV": "gzipped CSV beside JSON lines and Parquet (off); docs/exports.md",
    "TRAWL_SECRETS_KEY": "a secret: unset, tenants' secrets and login sessions are stored "
    "unencrypted in Postgres; an operator sets it (from a secret store) on the orchestrator "
    "and the workers; docs/sessions.md",
    "TRAWL_SECRETS_MAX_COUNT": "secrets per tenant (100); docs/sessions.md",
    "TRAWL_SECRETS_MAX_VALUE_BYTES": "the size of one secret (8 KiB); docs/sessions.md",
    "TRAWL_SCHEDULER": "the orchestrator's scheduler loop (on); docs/schedules.md",
    "TRAWL_SCHEDULER_TICK_S": "how often the scheduler looks for due schedules (5 s); "
    "docs/operations.md",
    "TRAWL_MAX_SCHEDULES": "schedules per tenant (100); docs/schedules.md",
    "TRAWL_SCHEDULE_MIN_INTERVAL_S": "the most often a schedule may fire (once a minute); "
    "docs/schedules.md",
    "TRAWL_METRICS_INTERVAL_S": "how often the orchestrator holding the metrics claim reads "
    "the backlog for OpenTelemetry (15 s); docs/operations.md",
    "TRAWL_RETENTION_DAYS": "Postgres rows of executions ended 90 days ago are pruned; "
    "docs/operations.md",
    "TRAWL_WORKER_AUTOSCALE": "each engine's concurrency autoscaled under "
    "TRAWL_WORKER_CONCURRENCY (on); docs/operations.md",
    "TRAWL_WORKER_BROWSER_CONCURRENCY": "browser tabs at once at most when autoscaled (32); "
    "docs/operations.md",
    "TRAWL_AUTOSCALE_MEMORY_MB": "the memory the autoscaler keeps a worker under (0: the "
    "container's limit); docs/operations.md",
}
_EVERYWHERE.update(_TUNABLE)
_NO_BROWSER = {"TRAWL_CHROMIUM_PATH": "the orchestrator image has no browser"}
# On Cloud Run the orchestrator and the workers export to their collector sidecar.
_NO_COLLECTOR = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "OpenTelemetry's standard variable: unset, nothing is "
    "exported; operators set it to their collector (docs/operations.md)",
}
_ON_CLOUD_RUN = {
    "STORAGE_EMULATOR_HOST": "real GCS on Cloud Run",
    "PORT": "reserved on Cloud Run: a service gets it from containerPort (8080); the worker's "
    "health server keeps its default 8080 (worker pools are not probed)",
}
_ORCHESTRATOR_ONLY = {
    "TRAWL_API_HOST": "the orchestrator's bind address",
    "TRAWL_MAX_REQUEST_BYTES": "the orchestrator's request limit",
    "TRAWL_MAX_RUNNING_EXECUTIONS": "the orchestrator's admission limit",
}
_WORKER_ONLY = {
    "TRAWL_HEALTH_HOST": "the worker's health server (the orchestrator serves /healthz itself)",
    "TRAWL_WORKER_CONCURRENCY": "sizes the pull stream; the orchestrator only publishes",
    "TRAWL_CHROMIUM_PATH": "no browser in the orchestrator image",
}
LEFT_AT_DEFAULT: dict[str, dict[str, str]] = {
    "compose:setup": {**_EVERYWHERE, **_NO_BROWSER, **_NO_COLLECTOR},
    "compose:orchestrator": {**_EVERYWHERE, **_NO_BROWSER, **_NO_COLLECTOR},
    "compose:worker": {**_EVERYWHERE, **_NO_COLLECTOR},
    "cloudrun:orchestrator": {**_EVERYWHERE, **_ON_CLOUD_RUN, **_WORKER_ONLY},
    "cloudrun:worker": {**_EVERYWHERE, **_ON_CLOUD_RUN, **_ORCHESTRATOR_ONLY},
    "cloudrun:setup": {
        **_EVERYWHERE,
        **_NO_COLLECTOR,
        **_ON_CLOUD_RUN,
        **_ORCHESTRATOR_ONLY,
        **_WORKER_ONLY,
        "TRAWL_REDIS_URL": "setup migrates Postgres and checks Pub/Sub; no Redis",
        "TRAWL_REDIS_PREFIX": "no Redis in setup",
        "TRAWL_SEEN_TTL_S": "no Redis in setup",
        "TRAWL_GCS_PREFIX": "setup runs with --no-bucket",
        "TRAWL_SHUTDOWN_GRACE_S": "a one-shot job",
        "TRAWL_ALLOW_PRIVATE_NETWORKS": "setup fetches nothing",
        "TRAWL_ALLOW_NETWORKS": "setup fetches nothing",
    },
}


# --- what the code reads -------------------------------------------------------------------


def _module_constants(tree: ast.Module) -> dict[str, str]:
    """NAME = "text" at module level."""
    found: dict[str, str] = {}
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        found.update({t.id: value.value for t in targets if isinstance(t, ast.Name)})
    return found


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and _is_os(node.value)


def _is_os(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "os"


def _environ_nodes(node: ast.AST) -> list[ast.AST]:
    return [n for n in ast.walk(node) if _is_environ(n)]


def _env_read(node: ast.AST) -> tuple[ast.AST, list[ast.AST]] | None:
    """(the name read, the os.environ nodes involved) if ``node`` reads one variable."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        if node.func.attr == "getenv" and _is_os(node.func.value):
            return node.args[0], []
        if node.func.attr in {"get", "pop", "setdefault"} and _environ_nodes(node.func.value):
            return node.args[0], _environ_nodes(node.func.value)
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        environ = _environ_nodes(node.value)
        return (node.slice, environ) if environ else None
    if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In | ast.NotIn):
        environ = _environ_nodes(node.comparators[0])
        return (node.left, environ) if environ else None
    return None


@functools.cache
def code_env_reads() -> tuple[dict[str, list[str]], list[str]]:
    """Variables the packages read by name (name -> where), and unexplained other reads."""
    trees = {
        path: ast.parse(path.read_text(), str(path))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    everywhere: dict[str, str] = {}
    for tree in trees.values():
        everywhere.update(_module_constants(tree))
    reads: dict[str, list[str]] = {}
    problems: list[str] = []
    for path, tree in trees.items():
        module = str(path.relative_to(ROOT))
        constants = {**everywhere, **_module_constants(tree)}
        consumed: set[int] = set()
        for node in ast.walk(tree):
            read = _env_read(node)
            if read is None:
                continue
            key, environ = read
            consumed.update(id(n) for n in environ)
            where = f"{module}:{getattr(node, 'lineno', '?')}"
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                reads.setdefault(key.value, []).append(where)
            elif isinstance(key, ast.Name) and key.id in constants:
                reads.setdefault(constants[key.id], []).append(where)
            else:
                problems.append(f"{where}: reads a variable whose name is not a constant")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "os":
                hidden = {a.name for a in node.names} & {"environ", "getenv", "getenvb"}
                if hidden:  # the scan looks for os.environ and os.getenv
                    problems.append(f"{module}:{node.lineno}: from os import {hidden}")
        leftover = [n for n in ast.walk(tree) if _is_environ(n) and id(n) not in consumed]
        if leftover and module not in BULK_ENV_READERS:
            lines = ", ".join(str(getattr(n, "lineno", "?")) for n in leftover)
            problems.append(f"{module}:{lines}: uses os.environ other than by name")
    return reads, problems


def required_env() -> dict[str, str]:
    """Every variable a deployed Trawl process may need: name -> where it comes from."""
    names = {env_name(field): f"Settings.{field}" for field in Settings.__struct_fields__}
    reads, _ = code_env_reads()
    names.update({name: "read at " + ", ".join(where) for name, where in reads.items()})
    return names


def test_the_code_reads_the_environment_by_name_only() -> None:
    reads, problems = code_env_reads()
    assert not problems, problems
    # The scan sees the reads we know of (it would find nothing if it were broken).
    assert "STORAGE_EMULATOR_HOST" in reads
    assert "TRAWL_ALLOW_PRIVATE_NETWORKS" in reads


# --- docker-compose.yml ---------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def interpolated(value: str) -> str:
    """A compose value with ``${VAR:-default}`` taken at its default."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)


LONG_RUNNING = ("postgres", "pgbouncer", "redis", "pubsub", "gcs", "orchestrator", "worker")


def test_compose_has_the_services_with_health_checks() -> None:
    services = compose()["services"]
    assert set(services) >= {*LONG_RUNNING, "setup"}
    for name in LONG_RUNNING:
        test = services[name].get("healthcheck", {}).get("test")
        assert test, f"{name} has no health check"
    assert services["setup"]["command"] == ["setup"]
    assert services["setup"].get("restart") == "no"
    assert "healthcheck" not in services["setup"]  # one-shot


def test_compose_starts_in_order() -> None:
    services = compose()["services"]

    def conditions(name: str) -> dict[str, str]:
        depends = services[name].get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        return {dep: spec["condition"] for dep, spec in depends.items()}

    backends = {"pgbouncer", "redis", "pubsub", "gcs"}
    healthy = dict.fromkeys(backends, "service_healthy")
    assert conditions("pgbouncer") == {"postgres": "service_healthy"}
    assert conditions("setup") == healthy
    for name in ("orchestrator", "worker"):
        assert conditions(name) == {**healthy, "setup": "service_completed_successfully"}


def test_compose_workers_scale() -> None:
    services = compose()["services"]
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert any(str(p).endswith("8080") for p in services["orchestrator"]["ports"])
    # SIGTERM, then the drain, within the stop grace period.
    grace = float(compose_env("worker")["TRAWL_SHUTDOWN_GRACE_S"])
    assert float(worker["stop_grace_period"].rstrip("s")) > grace


def test_compose_wires_the_services() -> None:
    services = compose()["services"]
    env = {k: interpolated(v) for k, v in compose_env("worker").items()}
    assert env["TRAWL_DATABASE_URL"].split("@")[1].startswith("pgbouncer:6432/")
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    assert services["pgbouncer"]["environment"]["LISTEN_PORT"] == "6432"
    assert env["TRAWL_REDIS_URL"].startswith("redis://redis:6379/")
    assert "--host-port=0.0.0.0:8085" in services["pubsub"]["command"]
    assert env["PUBSUB_EMULATOR_HOST"] == "pubsub:8085"
    assert env["STORAGE_EMULATOR_HOST"] == "http://gcs:4443"
    assert env["TRAWL_GCS_CREATE_BUCKET"] == "1"
    assert env["TRAWL_ALLOW_PRIVATE_NETWORKS"] == "0"
    assert env["TRAWL_CHROMIUM_PATH"] == "/usr/bin/chromium"
    assert env["TRAWL_API_HOST"] == env["TRAWL_HEALTH_HOST"] == "0.0.0.0"
    for name in ("setup", "orchestrator", "worker"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()


def test_compose_processes_share_one_environment() -> None:
    shared = {k: str(v) for k, v in compose()["x-trawl-env"].items()}
    for name in ("setup", "orchestrator", "worker"):
        env = compose_env(name)
        assert {k: env.get(k) for k in shared} == shared, name


@pytest.mark.parametrize("service", ["setup", "orchestrator", "worker"])
def test_compose_sets_every_variable_the_code_reads(service: str) -> None:
    env = compose_env(service)
    needed = {**required_env(), **EMULATOR_ENV}
    check_env(f"compose:{service}", env, needed)
    settings = load_settings({k: interpolated(v) for k, v in env.items()})
    assert settings.pubsub_ack_deadline_s == DEFAULTS.pubsub_ack_deadline_s


def check_env(where: str, env: dict[str, str], needed: dict[str, str]) -> None:
    left = LEFT_AT_DEFAULT[where]
    missing = {name: why for name, why in needed.items() if name not in env and name not in left}
    assert not missing, f"{where} does not set {missing}: set them, or add them with a reason"
    stale = {name for name in left if name not in needed}
    assert not stale, f"{where}: LEFT_AT_DEFAULT names what the code does not read: {stale}"
    contradicted = {name for name in left if name in env}
    assert not contradicted, f"{where} sets {contradicted}, listed as left at default"


def compose_command() -> list[str] | None:
    """``docker compose`` (the plugin), else the standalone ``docker-compose``; None if
    neither is installed."""
    docker = shutil.which("docker")
    if docker is not None:
        version = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False, timeout=60
        )
        if version.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone is not None else None


@pytest.mark.integration  # runs docker compose
def test_compose_config_is_valid() -> None:
    """`docker compose config` resolves the file as Compose does (no engine needed).
    `make test` installs Debian's docker-compose where the docker client has no compose
    plugin; without either (no docker at all) there is nothing to run it with."""
    command = compose_command()
    if command is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- docker/ ------------------------------------------------------------------------------


def final_stage(text: str) -> str:
    return text[text.rindex("\nFROM ") :]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_images_are_multi_stage_and_unprivileged(image: str) -> None:
    text = DOCKERFILES[image].read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE)
    assert base and base.group(1).startswith("python:3.11-slim")
    last = final_stage(text)
    assert last.startswith("\nFROM ${PYTHON_IMAGE}")
    assert "COPY --from=builder /opt/trawl /opt/trawl" in last
    user = re.findall(r"^USER (\S+)", last, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    # pyproject.toml, its readme and every package the wheel holds go into the build.
    assert "COPY pyproject.toml README.md ./" in text
    for package in PACKAGES:
        assert f"COPY {package}/ {package}/" in text, f"{image} image lacks {package}/"


def instructions(text: str) -> list[str]:
    """A Dockerfile's instructions, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [i.strip() for i in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if i.strip()]


def test_only_the_worker_image_has_chromium() -> None:
    def runs(image: str) -> str:
        text = DOCKERFILES[image].read_text()
        return " ".join(i for i in instructions(text) if i.startswith("RUN "))

    assert re.search(r"apt-get install[^&]*\bchromium\b", runs("worker"))
    assert re.search(r"apt-get install[^&]*\bfonts-", runs("worker"))
    worker_env = [i for i in instructions(final_stage(DOCKERFILES["worker"].read_text()))]
    assert any("TRAWL_CHROMIUM_PATH=/usr/bin/chromium" in i for i in worker_env if i[:4] == "ENV ")
    assert "chromium" not in runs("orchestrator")


def test_dockerignore_keeps_local_state_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "bench/.venvs", ".pytest_cache", ".env"} <= ignored
    assert not ignored & {"README.md", "pyproject.toml", *PACKAGES}


# --- deploy/cloudrun ----------------------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    """Every YAML file under deploy/cloudrun, parsed (placeholders left as they are)."""
    files = sorted(CLOUDRUN.rglob("*.yaml")) + sorted(CLOUDRUN.rglob("*.yml"))
    assert files
    return {str(path.relative_to(CLOUDRUN)): yaml.safe_load(path.read_text()) for path in files}


PROCESSES = {  # Cloud Run manifest -> (kind, the Trawl container's name)
    "orchestrator.service.yaml": ("Service", "orchestrator"),
    "worker-pool.yaml": ("WorkerPool", "worker"),
    "setup.job.yaml": ("Job", "setup"),
}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    template = doc["spec"]["template"]
    if doc["kind"] == "Job":
        template = template["spec"]["template"]
    spec: dict[str, Any] = template["spec"]
    return spec


def container(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in pod_spec(doc)["containers"] if c["name"] == name]
    assert len(found) == 1, f"no container {name!r}"
    return found[0]


def container_env(doc: dict[str, Any], name: str) -> dict[str, str]:
    env = container(doc, name).get("env", [])
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)), f"{name}: a variable is set twice"
    return {
        e["name"]: str(e["value"])
        if "value" in e
        else f"<secret:{e['valueFrom']['secretKeyRef']['name']}>"
        for e in env
    }


def test_every_cloudrun_yaml_parses() -> None:
    docs = manifests()
    assert set(PROCESSES) <= set(docs)
    for name, (kind, _) in PROCESSES.items():
        assert docs[name]["kind"] == kind
    build = docs["cloudbuild.yaml"]
    for step in build["steps"]:
        dockerfile = step["args"][step["args"].index("-f") + 1]
        assert (ROOT / dockerfile).is_file()


@pytest.mark.parametrize("manifest", sorted(PROCESSES))
def test_cloudrun_sets_every_variable_the_code_reads(manifest: str) -> None:
    doc = manifests()[manifest]
    kind, name = PROCESSES[manifest]
    env = container_env(doc, name)
    process = {"Service": "orchestrator", "WorkerPool": "worker", "Job": "setup"}[kind]
    check_env(f"cloudrun:{process}", env, required_env())
    emulators = set(EMULATOR_ENV) & set(env)
    assert not emulators, f"{manifest} sets {emulators} (emulators only)"
    assert env["TRAWL_GCS_CREATE_BUCKET"] == "0"  # production buckets pre-exist
    assert env["TRAWL_DATABASE_URL"].startswith("<secret:")
    assert env.get("TRAWL_ALLOW_PRIVATE_NETWORKS", "0") == "0"


def test_cloudrun_orchestrator_service() -> None:
    doc = manifests()["orchestrator.service.yaml"]
    assert doc["apiVersion"] == "serving.knative.dev/v1"
    annotations = doc["spec"]["template"]["metadata"]["annotations"]
    assert {"autoscaling.knative.dev/minScale", "autoscaling.knative.dev/maxScale"} <= set(
        annotations
    )
    check_telemetry(doc, "orchestrator", annotations)
    # The backlog the autoscaler reads is exported every 15 s at most.
    assert int(container_env(doc, "orchestrator")["OTEL_METRIC_EXPORT_INTERVAL"]) <= 15_000
    spec = pod_spec(doc)
    assert {"serviceAccountName", "containerConcurrency", "timeoutSeconds"} <= set(spec)
    api = container(doc, "orchestrator")
    assert [p["containerPort"] for p in api["ports"]] == [8080]
    assert api["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    check_pgbouncer(doc)


def test_cloudrun_worker_pool() -> None:
    doc = manifests()["worker-pool.yaml"]
    assert doc["apiVersion"] == "run.googleapis.com/v1"
    annotations = doc["metadata"]["annotations"]
    assert annotations["run.googleapis.com/scalingMode"] == "manual"
    assert "run.googleapis.com/manualInstanceCount" in annotations
    template = doc["spec"]["template"]["metadata"]["annotations"]
    check_telemetry(doc, "worker", template)
    worker = container(doc, "worker")
    assert "ports" not in worker  # a pull consumer
    assert container_env(doc, "worker")["TRAWL_CHROMIUM_PATH"] == "/usr/bin/chromium"
    assert "serviceAccountName" in pod_spec(doc)
    check_pgbouncer(doc)


COLLECTOR_CONFIG = CLOUDRUN / "otel-collector.yaml"


def check_telemetry(doc: dict[str, Any], app: str, annotations: dict[str, str]) -> None:
    """The process exports to its collector sidecar, which starts first, reads the config
    deploy.sh stores as a secret, and scrapes the PgBouncer exporter beside it."""
    deps = json.loads(annotations["run.googleapis.com/container-dependencies"])
    assert deps == {app: ["pgbouncer", "otel-collector"], "pgbouncer-exporter": ["pgbouncer"]}
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    receiver = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert container_env(doc, app)["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{receiver}"
    collector = container(doc, "otel-collector")
    [config_arg] = collector["args"]
    [mount] = collector["volumeMounts"]
    volumes = {v["name"]: v for v in pod_spec(doc)["volumes"]}
    [item] = volumes[mount["name"]]["secret"]["items"]
    assert config_arg == f"--config={mount['mountPath']}/{item['path']}"
    assert volumes[mount["name"]]["secret"]["secretName"] == "${SECRET_OTEL_CONFIG}"
    health = config["extensions"]["health_check"]["endpoint"]
    assert collector["startupProbe"]["httpGet"]["port"] == int(health.rsplit(":", 1)[1])
    [scrape] = config["receivers"]["prometheus"]["config"]["scrape_configs"]
    [target] = scrape["static_configs"][0]["targets"]
    exporter = container(doc, "pgbouncer-exporter")
    assert exporter["args"] == [f"--web.listen-address={target}"]
    assert container_env(doc, "pgbouncer-exporter")["PGBOUNCER_EXPORTER_CONNECTION_STRING"] == (
        "<secret:${SECRET_PGBOUNCER_STATS_URL}>"
    )
    pgbouncer = container_env(doc, "pgbouncer")
    assert pgbouncer["STATS_USERS"] == pgbouncer["DB_USER"]  # the exporter's login
    assert config["exporters"]["googlecloud"]["metric"]["prefix"] == "workload.googleapis.com"


def check_pgbouncer(doc: dict[str, Any]) -> None:
    env = container_env(doc, "pgbouncer")
    assert env["POOL_MODE"] == "transaction"
    assert (env["LISTEN_ADDR"], env["LISTEN_PORT"]) == ("127.0.0.1", "6432")
    assert env["DB_PASSWORD"].startswith("<secret:")


def test_cloudrun_setup_job() -> None:
    doc = manifests()["setup.job.yaml"]
    assert container(doc, "setup")["args"] == ["setup", "--no-bucket"]


# --- deploy.sh --------------------------------------------------------------------------------


def deploy_defaults() -> dict[str, str]:
    """NAME="${NAME:-default}" at the top of deploy.sh."""
    pattern = re.compile(r'^([A-Z][A-Z0-9_]*)="\$\{\1:-([^}]*)\}"', re.MULTILINE)
    return dict(pattern.findall(DEPLOY_SH.read_text()))


@pytest.mark.integration  # runs bash
def test_deploy_sh_is_valid_bash() -> None:
    text = DEPLOY_SH.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    result = subprocess.run(
        ["bash", "-n", str(DEPLOY_SH)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_deploy_sh_defaults_are_the_code_defaults() -> None:
    defaults = deploy_defaults()
    expected = {
        "PUBSUB_TOPIC": DEFAULTS.pubsub_topic,
        "PUBSUB_SUBSCRIPTION": DEFAULTS.pubsub_subscription,
        "PUBSUB_DEAD_LETTER_TOPIC": DEFAULTS.pubsub_dead_letter_topic,
        "PUBSUB_ACK_DEADLINE_S": str(DEFAULTS.pubsub_ack_deadline_s),
        "PUBSUB_RETENTION_S": str(DEFAULTS.pubsub_retention_s),
        "PUBSUB_MAX_DELIVERY_ATTEMPTS": str(DEFAULTS.pubsub_max_delivery_attempts),
        "WORKER_CONCURRENCY": str(DEFAULTS.worker_concurrency),
        "SEEN_TTL_S": str(DEFAULTS.seen_ttl_s),
        "REDIS_PREFIX": DEFAULTS.redis_prefix,
        "MAX_REQUEST_BYTES": str(DEFAULTS.max_request_bytes),
        "MAX_RUNNING_EXECUTIONS": str(DEFAULTS.max_running_executions),
    }
    assert {k: defaults.get(k) for k in expected} == expected
    assert float(defaults["SHUTDOWN_GRACE_S"]) == DEFAULTS.shutdown_grace_s


def test_every_placeholder_is_a_deploy_sh_variable() -> None:
    assigned = set(
        re.findall(r"^\s*(?:local\s+)?([A-Z][A-Z0-9_]*)=", DEPLOY_SH.read_text(), re.MULTILINE)
    )
    for name in [*PROCESSES, "autoscaler.yaml"]:
        used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", (CLOUDRUN / name).read_text()))
        assert used <= assigned, f"{name} uses {used - assigned}, which deploy.sh never sets"


FAKE_GCLOUD = r"""#!/usr/bin/env bash
# A stand-in for gcloud: logs its arguments; nothing exists yet; keeps replaced manifests.
printf '%s\n' "$*" >> "$FAKE_GCLOUD_LOG"
case "$*" in
  *"projects describe"*) echo 123456789 ;;
  *"sql instances describe"*ipAddresses*) echo 10.1.2.3 ;;
  *"redis instances describe"*"value(host)"*) echo 10.4.5.6 ;;
  *"redis instances describe"*"value(port)"*) echo 6379 ;;
  *get-auth-string*) echo redis-auth ;;
  *"run services describe"*) echo https://trawl-orchestrator.example.run.app ;;
  *"secrets versions add"*) cat >/dev/null ;;  # reads the value as gcloud does (no SIGPIPE)
  *" replace "*|*-from-file*)
    previous=""
    for arg in "$@"; do
      case "$previous" in
        replace|--payload-data-from-file|--config-from-file|--policy-from-file)
          cp "$arg" "$FAKE_GCLOUD_OUT/" ;;
      esac
      previous="$arg"
    done ;;
  *"secrets versions access"*|*" describe "*) exit 1 ;;
esac
exit 0
"""


def run_deploy(tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    out.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD)
    gcloud.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LC_ALL": "C",
        "PROJECT": "demo-project",
        "BUILD_WITH": "none",
        "IMAGE_TAG": "test",
        "FAKE_GCLOUD_LOG": str(tmp_path / "gcloud.log"),
        "FAKE_GCLOUD_OUT": str(out),
        **extra,
    }
    result = subprocess.run(
        ["bash", str(DEPLOY_SH)], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    return result, out


@pytest.mark.integration  # runs deploy.sh
def test_deploy_sh_makes_the_subscription_the_processes_expect(tmp_path: Path) -> None:
    result, out = run_deploy(tmp_path)
    assert result.returncode == 0, result.stderr
    calls = [shlex.split(line) for line in (tmp_path / "gcloud.log").read_text().splitlines()]
    created = [c for c in calls if c[:4] == ["pubsub", "subscriptions", "create", "trawl-workers"]]
    assert len(created) == 1
    flags = dict(zip(created[0][4::2], created[0][5::2], strict=False))
    rendered = {name: yaml.safe_load((out / name).read_text()) for name in PROCESSES}
    for name, (_, process) in PROCESSES.items():
        text = (out / name).read_text()
        assert not re.search(r"\$\{[A-Za-z_]", text), f"{name}: a placeholder was left"
        env = container_env(rendered[name], process)
        settings = load_settings({k: v for k, v in env.items() if not v.startswith("<secret")})
        assert flags["--topic"] == settings.pubsub_topic
        assert flags["--ack-deadline"] == str(settings.pubsub_ack_deadline_s)
        assert flags["--message-retention-duration"] == f"{settings.pubsub_retention_s}s"
        assert flags["--dead-letter-topic"] == settings.pubsub_dead_letter_topic
        assert flags["--max-delivery-attempts"] == str(settings.pubsub_max_delivery_attempts)
        assert flags["--expiration-period"] == "never"
        assert settings.pubsub_subscription == "trawl-workers"
        assert settings.pubsub_ack_deadline_s == DEFAULTS.pubsub_ack_deadline_s
    # Dead letters are kept by a subscription named like their topic, as the code expects.
    assert ["pubsub", "subscriptions", "create", "trawl-tasks-dead"] in [c[:4] for c in calls]
    worker = rendered["worker-pool.yaml"]["metadata"]["annotations"]
    assert worker["run.googleapis.com/manualInstanceCount"] == "2"


@pytest.mark.integration  # runs deploy.sh
def test_deploy_sh_refuses_more_connections_than_cloud_sql_has(tmp_path: Path) -> None:
    result, _ = run_deploy(tmp_path, WORKER_INSTANCES="100")
    assert result.returncode != 0
    assert "max_connections" in result.stderr
    assert not (tmp_path / "gcloud.log").exists()  # refused before anything was created


@pytest.mark.integration  # runs deploy.sh
def test_deploy_sh_autoscales_the_worker_pool_and_applies_monitoring(tmp_path: Path) -> None:
    result, out = run_deploy(tmp_path, WORKER_MIN_INSTANCES="2", WORKER_MAX_INSTANCES="30")
    assert result.returncode == 0, result.stderr
    calls = [shlex.split(line) for line in (tmp_path / "gcloud.log").read_text().splitlines()]
    config = yaml.safe_load((out / "autoscaler.yaml").read_text())
    [scaled] = config["spec"]["scaledObjects"]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == (
        "projects/demo-project/locations/europe-west1/workerpools/trawl-worker"
    )
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 30)
    assert config["spec"]["pollingInterval"] == 30
    triggers = {t["name"]: t for t in spec["triggers"]}
    per_instance = str(8 * DEFAULTS.worker_concurrency)  # a worker's flow control
    assert triggers["trawl-backlog"]["metadata"]["targetValue"] == per_instance
    assert (
        "workload.googleapis.com/trawl.queue.backlog"
        in triggers["trawl-backlog"]["metadata"]["filter"]
    )
    pubsub = triggers["pubsub-backlog"]["metadata"]
    assert pubsub["subscriptionName"] == "projects/demo-project/subscriptions/trawl-workers"
    assert pubsub["value"] == per_instance
    # CREMA applies the bounds only with a behavior (metric-provider translation.go).
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]
    # Its configuration is a parameter version the CREMA service is deployed on.
    [version] = [
        c for c in calls if c[:4] == ["parametermanager", "parameters", "versions", "create"]
    ]
    [deployed] = [c for c in calls if c[:3] == ["run", "deploy", "trawl-autoscaler"]]
    env = deployed[deployed.index("--set-env-vars") + 1]
    assert f"parameters/trawl-autoscaler/versions/{version[4]}," in env
    # The dashboard and every alert policy, rendered: no placeholder left.
    assert [c[:3] for c in calls].count(["monitoring", "dashboards", "create"]) == 1
    policies = sorted((ROOT / "deploy" / "monitoring" / "alerts").glob("*.json"))
    assert [c[:3] for c in calls].count(["monitoring", "policies", "create"]) == len(policies)
    for name in ["dashboard.json", *(p.name for p in policies)]:
        text = (out / name).read_text()
        assert not re.search(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", text), (
            f"{name}: a placeholder was left"
        )
        json.loads(text)
    assert 'subscription_id=\\"trawl-tasks-dead\\"' in (out / "dead-letters.json").read_text()
    # The connection budget counts the autoscaler's ceiling.
    (tmp_path / "too-many").mkdir()
    refused, _ = run_deploy(tmp_path / "too-many", WORKER_MAX_INSTANCES="100")
    assert refused.returncode != 0
    assert "max_connections" in refused.stderr


@pytest.mark.integration  # runs deploy.sh
def test_deploy_sh_without_autoscaling(tmp_path: Path) -> None:
    result, _ = run_deploy(tmp_path, AUTOSCALE="false")
    assert result.returncode == 0, result.stderr
    calls = [line.split()[:3] for line in (tmp_path / "gcloud.log").read_text().splitlines()]
    assert ["parametermanager", "parameters", "create"] not in calls
    assert ["run", "deploy", "trawl-autoscaler"] not in calls
    assert ["monitoring", "dashboards", "create"] in calls  # monitoring either way
