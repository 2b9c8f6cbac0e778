"""The production shape cannot run here (no Docker engine), so it is checked as far as it can be:
docker-compose parses and resolves it, everything it mounts exists, the pieces point at each other
(Prometheus at the workers and the api processes, Grafana at Prometheus and the dashboards, locust at the repo's locustfile),
and promtool accepts the Prometheus config and its alert rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from dispatcher.state.keys import ENCODING_CEILINGS

ROOT = Path(__file__).resolve().parent.parent
TOKENS = "compose-check-token,second-token"


def docker_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    assert shutil.which("docker-compose"), "docker-compose is missing: `make install` installs it (apt package docker-compose)"
    return subprocess.run(["docker-compose", "-f", "docker-compose.yml", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def services() -> dict:
    env = {**os.environ, "DISPATCHER_API_TOKENS": TOKENS}
    quiet = docker_compose("config", "-q", env=env)
    assert quiet.returncode == 0, quiet.stderr
    result = docker_compose("config", env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


@pytest.fixture(scope="module")
def workers(services: dict) -> dict:
    return {name: spec for name, spec in services.items() if spec.get("environment", {}).get("DISPATCHER_WORKER_ID")}


def volume_parts(volume: str | dict) -> tuple[str, str]:
    """(source, target) of a resolved volume entry, short (`src:dst[:mode]`) or long syntax."""
    if isinstance(volume, dict):
        return volume["source"], volume["target"]
    source, target = str(volume).split(":")[:2]
    return source, target


def bind_mounts(spec: dict) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of every bind mount of a resolved service; named volumes are skipped."""
    mounts = []
    for volume in spec.get("volumes", []):
        source, target = volume_parts(volume)
        if source.startswith("/"):
            mounts.append((Path(source), PurePosixPath(target)))
    return mounts


def host_path(spec: dict, container_path: str) -> Path | None:
    """Where a path inside the service's container comes from in the repo, through its bind mounts."""
    inside = PurePosixPath(container_path)
    for source, target in bind_mounts(spec):
        if inside == target or target in inside.parents:
            return source / inside.relative_to(target)
    return None


def dockerfile_stages() -> list[str]:
    return re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", (ROOT / "Dockerfile").read_text(), re.MULTILINE | re.IGNORECASE)


def test_compose_has_the_whole_production_shape(services: dict, workers: dict):
    assert {"kafka", "redis", "prometheus", "grafana", "locust"} <= set(services)
    assert services["locust"].get("profiles") == ["loadtest"]
    assert len(workers) >= 2, "several workers share one consumer group in production"
    envs = [spec["environment"] for spec in workers.values()]
    assert {env["DISPATCHER_BROKER"] for env in envs} == {"kafka://kafka:9092"}
    assert len({env["DISPATCHER_REDIS_URL"] for env in envs}) == 1
    assert envs[0]["DISPATCHER_REDIS_URL"].startswith("redis://redis:")
    assert len({env["DISPATCHER_WORKER_ID"] for env in envs}) == len(workers), "worker ids must be unique"
    assert all(env["DISPATCHER_API_TOKENS"] == TOKENS for env in envs)
    assert len({env.get("DISPATCHER_TOPIC_PREFIX", "") for env in envs}) == 1, "workers must share topics"
    for spec in workers.values():
        assert spec["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert spec["depends_on"]["redis"]["condition"] == "service_healthy"


def test_api_processes_serve_the_workers_data_beside_them(services: dict, workers: dict):
    api = services["api"]
    assert api["command"] == ["api"] and api.get("scale", 1) >= 2, "several api processes, each `dispatcher api`"
    assert "DISPATCHER_WORKER_ID" not in api["environment"], "an api process is no worker"
    worker_env = next(iter(workers.values()))["environment"]
    for name in ("DISPATCHER_BROKER", "DISPATCHER_REDIS_URL", "DISPATCHER_API_TOKENS", "DISPATCHER_ROUTING",
                 "DISPATCHER_TOPIC_PREFIX", "DISPATCHER_WORKSPACE", "DISPATCHER_TOPIC_PARTITIONS"):
        assert api["environment"].get(name) == worker_env.get(name), f"{name} differs between api and workers"
    assert api["build"].get("target") == next(iter(workers.values()))["build"].get("target")
    assert api["depends_on"]["kafka"]["condition"] == api["depends_on"]["redis"]["condition"] == "service_healthy"
    config = yaml.safe_load((ROOT / "dashboards" / "prometheus.yml").read_text())
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "dispatcher-api")
    (lookup,) = job["dns_sd_configs"]
    assert lookup["names"] == ["api"] and str(lookup["port"]) == api["environment"]["DISPATCHER_HTTP_PORT"], \
        "Prometheus scrapes every api replica (the service name resolves to each)"


def test_kafka_is_single_node_kraft_advertised_as_kafka_9092(services: dict):
    env = services["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "healthcheck" in services["kafka"]


def test_redis_persists_with_aof_on_a_named_volume(services: dict):
    command = services["redis"]["command"]
    command = command if isinstance(command, list) else command.split()
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    data = [volume for volume in services["redis"]["volumes"] if volume_parts(volume)[1] == "/data"]
    assert data and not volume_parts(data[0])[0].startswith("/"), "redis data belongs on a named volume"
    assert "redis-cli" in " ".join(services["redis"]["healthcheck"]["test"])


def test_redis_keeps_the_roster_in_hash_tables_as_the_dispatcher_advises(services: dict):
    command = services["redis"]["command"]
    command = command if isinstance(command, list) else command.split()
    for name, ceiling in ENCODING_CEILINGS.items():
        assert f"--{name}" in command, f"the redis service does not set {name}"
        assert int(command[command.index(f"--{name}") + 1]) <= ceiling


def test_compose_refuses_to_start_without_tokens():
    env = {key: value for key, value in os.environ.items() if key != "DISPATCHER_API_TOKENS"}
    result = docker_compose("config", "-q", env=env)
    assert result.returncode != 0 and "DISPATCHER_API_TOKENS" in result.stderr


def test_every_mounted_path_exists(services: dict):
    for name, spec in services.items():
        for source, target in bind_mounts(spec):
            assert source.exists(), f"{name} mounts {source} at {target}, which is not in the repo"
    for name, spec in services.items():
        routing = spec.get("environment", {}).get("DISPATCHER_ROUTING")
        if routing:
            path = host_path(spec, routing)
            assert path is not None and path.is_file(), f"{name}: DISPATCHER_ROUTING={routing} is not a mounted repo file"


def test_images_are_built_from_stages_the_dockerfile_has(services: dict, workers: dict):
    stages = dockerfile_stages()
    for name, spec in services.items():
        if "build" in spec:
            target = spec["build"].get("target")
            assert target is None or target in stages, f"{name} builds stage {target!r}; the Dockerfile has {stages}"
    # The last stage is what `docker build .` gives, and what the workers run.
    worker_stage = re.split(r"^FROM\s", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE | re.IGNORECASE)[-1]
    assert 'ENTRYPOINT ["dispatcher"]' in worker_stage and 'CMD ["worker"]' in worker_stage
    assert "EXPOSE 6066" in worker_stage and "/v1/health" in worker_stage
    assert re.search(r"^USER\s+(?!root\b|0\b)\S+", worker_stage, re.MULTILINE), "the worker must not run as root"
    for name, spec in workers.items():
        assert spec["build"].get("target") in (None, stages[-1]), f"{name} must run the Dockerfile's last stage"


def test_locust_runs_the_repo_locustfile_against_the_stack(services: dict, workers: dict):
    locust = services["locust"]
    command = locust["command"]
    locustfile = host_path(locust, command[command.index("-f") + 1])
    assert locustfile is not None and locustfile.resolve() == (ROOT / "loadtest" / "locustfile.py").resolve()
    # The locustfile imports the `loadtest` package, so its parent directory must be on the path.
    pythonpath = locust["environment"].get("PYTHONPATH", "")
    package = [target for source, target in bind_mounts(locust) if source.resolve() == (ROOT / "loadtest").resolve()]
    assert package and str(package[0].parent) in pythonpath.split(":"), "`import loadtest` would fail in the container"
    host = command[command.index("--host") + 1]
    assert re.fullmatch(r"http://([\w-]+):6066", host) and host.split("//")[1].split(":")[0] in workers
    worker_env = next(iter(workers.values()))["environment"]
    assert locust["environment"]["DISPATCHER_BROKER"] == worker_env["DISPATCHER_BROKER"]
    assert locust["environment"].get("DISPATCHER_TOPIC_PREFIX", "") == worker_env.get("DISPATCHER_TOPIC_PREFIX", "")
    assert locust["environment"].get("DISPATCHER_API_TOKENS") == TOKENS or locust["environment"].get("DISPATCHER_API_TOKEN")


def test_prometheus_scrapes_every_worker_with_the_alert_rules(services: dict, workers: dict):
    mounts = {str(target): source for source, target in bind_mounts(services["prometheus"])}
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text())
    for rules in config["rule_files"]:
        assert str(PurePosixPath("/etc/prometheus") / rules) in mounts, f"rule file {rules} is not mounted"
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "dispatcher")
    targets = {target for static in job["static_configs"] for target in static["targets"]}
    assert targets == {f"{name}:{spec['environment']['DISPATCHER_HTTP_PORT']}" for name, spec in workers.items()}
    assert job.get("metrics_path", "/metrics") == "/metrics"
    rules = [rule for group in yaml.safe_load((ROOT / "dashboards" / "alerts.yml").read_text())["groups"]
             if group["name"] == "dispatcher" for rule in group["rules"]]
    assert any(rule.get("alert") == "DispatcherWorkerDown" and rule["expr"] == 'up{job="dispatcher"} == 0' for rule in rules)


def test_grafana_provisions_prometheus_and_the_dashboards(services: dict):
    grafana = services["grafana"]
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning is not None and provisioning.is_dir()
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    prometheus = next(source for source in datasources if source["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "dispatcher.yml").read_text())["providers"]
    dashboards_dir = host_path(grafana, providers[0]["options"]["path"])
    assert dashboards_dir is not None, "the dashboard provider's path is not mounted"
    dashboards = sorted(dashboards_dir.glob("*.json"))
    assert dashboards, f"no dashboard json in {dashboards_dir}"
    for dashboard in dashboards:
        uids = set(re.findall(r'"datasource":\s*\{[^}]*"uid":\s*"([^"]+)"', dashboard.read_text()))
        json.loads(dashboard.read_text())
        assert uids <= {prometheus["uid"]}, f"{dashboard.name} uses datasources {uids}, provisioned is {prometheus['uid']}"


def test_prometheus_config_and_rules_pass_promtool():
    assert shutil.which("promtool"), "promtool is missing: `make install` installs it (apt package prometheus)"
    result = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=ROOT / "dashboards",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout and "SUCCESS" in result.stdout, result.stdout
