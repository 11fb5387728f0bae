"""The deployment files: docker-compose.yml, deploy/Dockerfile with its entrypoint, deploy/k8s/ and
the RabbitMQ definitions with their setup script.

Validators: `docker compose config -q` when `docker compose version` works; otherwise (as on the
development machines, which have the docker CLI without its compose plugin) the Compose
Specification's JSON schema, vendored in tests/schemas/ (see its README). Kubernetes manifests are
validated against Kubernetes' own JSON schemas (strict: unknown fields fail) from the
`kubernetes-validate` package, except the RabbitmqCluster custom resource, which gets structural
checks only. Nothing here skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import jsonschema
import pytest
import yaml

from deploy import rabbitmq_setup

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
SERVICES = ("auth", "billing", "payments", "documents")
COMPONENTS = SERVICES + ("gateway",)
SERVICE_CLASSES = {
    "auth": "services.auth.service:AuthService",
    "billing": "services.billing.service:BillingService",
    "payments": "services.payments.service:PaymentsService",
    "documents": "services.documents.service:DocumentsService",
}
# Kubernetes releases the manifests are checked against: an older one still in wide use and the
# newest the schema package knows. autoscaling/v2 and policy/v1 need 1.23 or newer.
K8S_VERSIONS = ("1.30.0", "1.37.0")


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# --- docker-compose.yml -----------------------------------------------------------------------


def docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
    return probe.returncode == 0


# Go's time.ParseDuration, which compose uses for these; the schema only says "string".
DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
HEALTHCHECK_DURATIONS = ("interval", "timeout", "start_period", "start_interval")


def compose_schema_errors(document: dict) -> list[str]:
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(document)
    ]
    for name, service in (document.get("services") or {}).items():
        for key in HEALTHCHECK_DURATIONS:
            value = (service.get("healthcheck") or {}).get(key)
            if isinstance(value, str) and not DURATION.match(value):
                errors.append(f"services/{name}/healthcheck/{key}: {value!r} is not a duration")
    return errors


def test_compose_file_is_valid():
    if docker_compose_available():
        result = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE), "config", "-q"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    else:
        # No compose plugin here: the specification's own schema is the validator.
        errors = compose_schema_errors(compose())
        assert not errors, "docker-compose.yml does not match the Compose Specification:\n" + "\n".join(errors)


def test_compose_schema_check_catches_mistakes():
    """The fallback validator is not a rubber stamp: a misspelt key and a bad duration fail."""
    document = compose()
    document["services"]["billing"]["healthcheck"] = dict(
        document["services"]["billing"]["healthcheck"], intervall="15s"
    )
    assert any("intervall" in e for e in compose_schema_errors(document))
    document = compose()
    document["services"]["auth"]["healthcheck"] = dict(document["services"]["auth"]["healthcheck"], interval="15")
    assert any("interval" in e for e in compose_schema_errors(document))
    document = compose()
    document["services"]["gateway"]["restart"] = 3
    assert compose_schema_errors(document)


def test_every_compose_service_has_a_healthcheck_and_a_restart_policy():
    services = compose()["services"]
    assert set(services) == {"rabbitmq", "postgres", *COMPONENTS}
    for name, service in services.items():
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in {"CMD", "CMD-SHELL"}, f"{name} has no health check"


def test_compose_services_probe_their_own_http_health_endpoints():
    services = compose()["services"]
    for name in SERVICES:
        service = services[name]
        assert service["command"] == [name]
        assert service["environment"][f"{name.upper()}_HTTP_ADDRESS"] == "0.0.0.0:9100"
        probe = " ".join(service["healthcheck"]["test"])
        assert "http://127.0.0.1:9100/readyz" in probe, name
        assert "ClusterRpcProxy" not in probe
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert "ports" not in service, f"{name} publishes a port, so `--scale {name}=3` would clash"
    gateway = services["gateway"]
    assert gateway["command"] == ["gateway"]
    assert "http://127.0.0.1:8000/readyz" in " ".join(gateway["healthcheck"]["test"])
    assert all(gateway["depends_on"][name]["condition"] == "service_healthy" for name in SERVICES)
    assert "rabbitmq:" in services["rabbitmq"]["image"] and services["rabbitmq"]["image"].endswith("-management")


def test_each_service_connects_as_its_own_database_role():
    init_sql = (ROOT / "deploy" / "postgres-init.sql").read_text()
    services = compose()["services"]
    roles = set()
    for name in SERVICES:
        url = urllib.parse.urlsplit(services[name]["environment"][f"{name.upper()}_DATABASE_URL"])
        assert (url.username, url.path.lstrip("/")) == (name, name), f"{name} must use role and database {name}"
        roles.add(url.username)
        assert re.search(rf"CREATE ROLE {name} LOGIN NOSUPERUSER NOBYPASSRLS", init_sql), name
        assert re.search(rf"CREATE DATABASE {name} OWNER {name};", init_sql), name
        # No other service's URL in this container.
        others = [key for key in services[name]["environment"] if key.endswith("_DATABASE_URL")]
        assert others == [f"{name.upper()}_DATABASE_URL"]
    assert len(roles) == len(SERVICES)


# --- deploy/Dockerfile and deploy/entrypoint.sh -----------------------------------------------


def test_dockerfile_runs_as_non_root_and_lets_the_command_pick_the_process():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert users[-1].split(":")[0].isdigit(), "a numeric USER lets runAsNonRoot verify it"
    assert 'ENTRYPOINT ["/app/deploy/entrypoint.sh"]' in dockerfile
    for name in SERVICES:
        assert f"{name.upper()}_HTTP_ADDRESS=0.0.0.0:9100" in dockerfile
    assert "GATEWAY_BIND=0.0.0.0:8000" in dockerfile


@pytest.fixture()
def stub_bin(tmp_path):
    """nameko, gunicorn and python stand-ins that print how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("nameko", "gunicorn", "python"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho {tool} "$@"\n')
        script.chmod(0o755)
    return bin_dir


def run_entrypoint(stub_bin: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{stub_bin}:{os.environ['PATH']}")
    return subprocess.run(
        ["sh", str(ROOT / "deploy" / "entrypoint.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )


def test_entrypoint_picks_the_service(stub_bin):
    for name, cls in SERVICE_CLASSES.items():
        result = run_entrypoint(stub_bin, name)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["nameko", "run", "--config", f"services/{name}/config.yml", cls]
        assert (ROOT / "services" / name / "config.yml").exists()
    gateway = run_entrypoint(stub_bin, "gateway", "--workers", "3")
    assert gateway.stdout.split() == ["gunicorn", "-c", "services/gateway/gunicorn.conf.py", "--workers", "3"]
    assert run_entrypoint(stub_bin, "seed").stdout.split() == ["python", "-m", "services.billing.seed"]
    assert run_entrypoint(stub_bin, "migrate", "billing").stdout.startswith("python -c")
    assert run_entrypoint(stub_bin, "migrate", "nope").returncode == 2
    assert run_entrypoint(stub_bin, "echo", "any", "command").stdout.strip() == "any command"
    usage = run_entrypoint(stub_bin)
    assert usage.returncode == 0 and "auth | billing | payments | documents" in usage.stdout


# --- deploy/k8s -------------------------------------------------------------------------------


def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def manifests() -> list[dict]:
    documents = []
    for resource in kustomization()["resources"]:
        documents += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    return documents


def find(kind: str, name: str) -> dict:
    matches = [d for d in manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def test_kustomization_lists_every_manifest():
    listed = set(kustomization()["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == present
    # The example Secret is kept out on purpose: `kubectl apply -k` must never overwrite the real one.
    assert "secret.example.yaml" not in listed
    generated = {name for g in kustomization()["configMapGenerator"] for name in g["files"]}
    assert generated == {"rabbitmq-definitions.json"}
    assert [i["name"] for i in kustomization()["images"]] == ["billing-portal"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_match_the_kubernetes_schemas(version):
    import kubernetes_validate

    checked = set()
    documents = manifests() + list(yaml.safe_load_all((K8S / "secret.example.yaml").read_text()))
    for document in documents:
        if document["apiVersion"].startswith("rabbitmq.com/"):
            continue  # a custom resource: no schema in the package; checked structurally below
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{document['kind']} {document['metadata']['name']} (Kubernetes {version}): {exc.message} "
                f"at {'/'.join(map(str, exc.path))}"
            )
        checked.add(document["kind"])
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
        "Job",
        "Namespace",
    } <= checked


def test_kubernetes_schema_check_catches_mistakes():
    import kubernetes_validate

    deployment = find("Deployment", "billing")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def pod_labels(deployment: dict) -> dict:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    return selector


@pytest.mark.parametrize("name", COMPONENTS)
def test_each_deployment_is_probed_limited_non_root_and_has_a_pdb_and_an_hpa(name):
    deployment = find("Deployment", name)
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "billing-portal"
    assert container["args"] == [name]

    port, live, ready = (8000, "/livez", "/readyz") if name == "gateway" else (9100, "/healthz", "/readyz")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    port_name = "http" if name == "gateway" else "metrics"
    assert ports == {port_name: port}
    for probe, path in (("readinessProbe", ready), ("livenessProbe", live)):
        assert container[probe]["httpGet"]["path"] == path, (name, probe)
        assert container[probe]["httpGet"]["port"] in (port, port_name)
    if name == "gateway":
        # Its /metrics is on the public port and wants a bearer token, which annotations cannot send.
        assert "annotations" not in deployment["spec"]["template"]["metadata"]
        assert any(e["name"] == "METRICS_TOKEN" for e in container["env"])
    else:
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/path"] == "/metrics"

    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"} and set(resources["limits"]) == {"cpu", "memory"}

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # nameko drains running workers on SIGTERM; gunicorn has graceful_timeout 10 s plus the preStop sleep.
    assert pod["terminationGracePeriodSeconds"] >= (30 if name == "gateway" else 60)

    assert {"configMapRef": {"name": "portal-config"}} in container["envFrom"]
    secret_keys = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
    assert "AMQP_URI" in secret_keys
    if name != "gateway":
        # Its own database and no other service's.
        assert {k for k in secret_keys if k.endswith("_DATABASE_URL")} == {f"{name.upper()}_DATABASE_URL"}

    pdb = find("PodDisruptionBudget", name)
    assert pdb["spec"]["selector"]["matchLabels"] == pod_labels(deployment)
    assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]

    hpa = find("HorizontalPodAutoscaler", name)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"


def test_gateway_service_and_secret_references():
    service = find("Service", "gateway")
    assert service["spec"]["selector"] == pod_labels(find("Deployment", "gateway"))
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    (example,) = yaml.safe_load_all((K8S / "secret.example.yaml").read_text())
    config = find("ConfigMap", "portal-config")["data"]
    for document in manifests():
        if document["kind"] not in {"Deployment", "Job"}:
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == "portal-secrets":
                    assert ref["key"] in example["stringData"], (document["metadata"]["name"], ref["key"])
                assert env["name"] not in config, f"{env['name']} is set twice"
    # No real secrets in the example, and none in the ConfigMap.
    assert all("CHANGE-ME" in value for value in example["stringData"].values())
    assert not {"AMQP_URI", "GATEWAY_SECRET", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"} & set(config)
    assert config["PORTAL_ENV"] != "dev"


def test_rabbitmq_cluster_and_setup_job():
    cluster = find("RabbitmqCluster", "rabbitmq")
    assert cluster["spec"]["replicas"] >= 3, "quorum queues need a majority to survive a node"
    job = find("Job", "rabbitmq-setup")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["python", "-m", "deploy.rabbitmq_setup"]
    (volume,) = job["spec"]["template"]["spec"]["volumes"]
    assert volume["configMap"]["name"] == "rabbitmq-definitions"
    mount = container["volumeMounts"][0]["mountPath"]
    assert container["args"][3] == f"{mount}/{volume['configMap']['items'][0]['path']}"


# --- RabbitMQ definitions ---------------------------------------------------------------------


def definitions() -> dict:
    return json.loads((K8S / "rabbitmq-definitions.json").read_text())


def test_definitions_default_to_durable_quorum_queues_with_dead_lettering():
    defs = definitions()
    (vhost,) = defs["vhosts"]
    # Definition import reads the default queue type from the vhost's metadata.
    assert vhost["metadata"]["default_queue_type"] == "quorum"
    exchanges = {(e["vhost"], e["name"]): e for e in defs["exchanges"]}
    queues = {(q["vhost"], q["name"]): q for q in defs["queues"]}
    for queue in queues.values():
        assert queue["durable"] is True and queue["arguments"]["x-queue-type"] == "quorum"

    policies = [p for p in defs["policies"] if "dead-letter-exchange" in p["definition"]]
    assert policies, "no dead-letter policy"
    for policy in policies:
        assert policy["vhost"] == vhost["name"]
        dlx = policy["definition"]["dead-letter-exchange"]
        assert (policy["vhost"], dlx) in exchanges, f"{dlx} is not declared"
        assert policy["definition"]["delivery-limit"] > 0
        if policy["definition"].get("dead-letter-strategy") == "at-least-once":
            assert policy["definition"]["overflow"] == "reject-publish"
        pattern = re.compile(policy["pattern"])
        # nameko's queue names, and not the dead-letter queue itself (no loops) nor reply queues.
        assert pattern.search("rpc-billing")
        assert pattern.search("evt-billing-invoice.sent--documents.on_invoice_sent")
        assert not pattern.search("rpc.reply-standalone_rpc_proxy-0b1c")
        for _, name in queues:
            assert not pattern.search(name)
        bound = {b["destination"] for b in defs["bindings"] if b["source"] == dlx}
        assert bound and all((policy["vhost"], q) in queues for q in bound)


# A stand-in for RabbitMQ's management API, in a process of its own: the unit run has eventlet's
# monkey patching on (nameko's pytest plugin), under which a server thread here would never run.
FAKE_MANAGEMENT_API = """
import http.server, json, sys
log = open(sys.argv[2], "a")
class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer(None)
    def do_POST(self):
        self.answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
    do_PUT = do_POST
    def answer(self, body):
        log.write(json.dumps([self.command, self.path, self.headers["Authorization"], body]) + "\\n")
        log.flush()
        self.send_response(200 if self.command == "GET" else 201)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Api)
print(server.server_port, flush=True)
server.serve_forever()
"""


def test_rabbitmq_setup_imports_the_definitions_and_creates_the_app_user(monkeypatch, capsys, tmp_path):
    log = tmp_path / "calls.jsonl"
    server = subprocess.Popen(
        [sys.executable, "-c", FAKE_MANAGEMENT_API, "0", str(log)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())
        monkeypatch.setenv("RABBITMQ_MANAGEMENT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("RABBITMQ_ADMIN_USERNAME", "admin")
        monkeypatch.setenv("RABBITMQ_ADMIN_PASSWORD", "s3cret")
        monkeypatch.setenv("AMQP_URI", "amqp://portal:p%40ss@rabbitmq:5672/portal")
        assert rabbitmq_setup.main([str(K8S / "rabbitmq-definitions.json")]) == 0
    finally:
        server.terminate()
        server.wait(10)
    made = [json.loads(line) for line in log.read_text().splitlines()]
    assert [[method, path, body] for method, path, _, body in made] == [
        ["GET", "/api/overview", None],
        ["POST", "/api/definitions", definitions()],
        ["PUT", "/api/users/portal", {"password": "p@ss", "tags": ""}],
        ["PUT", "/api/permissions/portal/portal", {"configure": ".*", "write": ".*", "read": ".*"}],
    ]
    assert {auth for _, _, auth, _ in made} == {"Basic YWRtaW46czNjcmV0"}
    assert "user 'portal'" in capsys.readouterr().out


def test_rabbitmq_setup_refuses_a_vhost_the_definitions_do_not_create():
    with pytest.raises(rabbitmq_setup.SetupError, match="vhost"):
        rabbitmq_setup.apply(None, definitions(), "amqp://portal:x@rabbitmq:5672/other")
    assert rabbitmq_setup.app_user("amqp://u:p@h:5672/") == ("u", "p", "/")
    assert rabbitmq_setup.app_user("amqp://u:p@h:5672/%2Fx") == ("u", "p", "/x")
    with pytest.raises(rabbitmq_setup.SetupError):
        rabbitmq_setup.app_user("amqp://h:5672/portal")
