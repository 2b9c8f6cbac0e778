"""The production shape cannot run here (no Docker engine), so it is checked as far as it can be:
docker-compose parses and resolves it, and everything it mounts exists."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def resolved_compose() -> dict:
    assert shutil.which("docker-compose"), "docker-compose is missing: `make install` installs it"
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "DISPATCHER_API_TOKENS": "compose-check-token"}, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid_and_complete():
    services = resolved_compose()["services"]
    assert {"kafka", "redis", "prometheus", "grafana", "locust"} <= set(services)
    workers = {name: spec for name, spec in services.items() if name.startswith("dispatcher-")}
    assert len(workers) >= 2
    envs = [spec["environment"] for spec in workers.values()]
    assert len({env["DISPATCHER_BROKER"] for env in envs}) == 1 and envs[0]["DISPATCHER_BROKER"] == "kafka://kafka:9092"
    assert len({env["DISPATCHER_REDIS_URL"] for env in envs}) == 1
    assert len({env["DISPATCHER_WORKER_ID"] for env in envs}) == len(workers)
    assert all(env["DISPATCHER_API_TOKENS"] == "compose-check-token" for env in envs)
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    grafana_mounts = " ".join(str(volume) for volume in services["grafana"]["volumes"])
    assert "provisioning" in grafana_mounts and "dashboards" in grafana_mounts


def test_compose_refuses_to_start_workers_without_tokens():
    env = {key: value for key, value in os.environ.items() if key != "DISPATCHER_API_TOKENS"}
    result = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0 and "DISPATCHER_API_TOKENS" in result.stderr


def test_every_mounted_path_exists():
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, spec in raw["services"].items():
        for volume in spec.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"


def test_prometheus_config_and_rules_pass_promtool():
    assert shutil.which("promtool"), "promtool is missing: `make install` installs the prometheus package"
    result = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=ROOT / "dashboards",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
