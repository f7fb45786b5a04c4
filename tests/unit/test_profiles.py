"""Engine profiles (Docker, Podman) and how the policy is spelled for each: pure logic.

The ``/version`` answers below are the engines' own, trimmed: Docker 20.10
from Debian's docker.io and Podman 4.3 from Debian's podman, as measured.
"""

from __future__ import annotations

import io
import tarfile

from docker.types import Ulimit

from dockermagic import SandboxPolicy
from dockermagic.profiles import DOCKER, PODMAN, engine_name, profile_for
from dockermagic.transfer import tar_files
from tests.support import make_result

DOCKER_VERSION = {
    "Platform": {"Name": ""},
    "Components": [
        {"Name": "Engine", "Version": "20.10.24+dfsg1"},
        {"Name": "containerd", "Version": "1.6.20~ds1"},
        {"Name": "runc", "Version": "1.1.5+ds1"},
        {"Name": "docker-init", "Version": "0.19.0"},
    ],
    "Version": "20.10.24+dfsg1",
    "ApiVersion": "1.41",
}

PODMAN_VERSION = {
    "Platform": {"Name": "linux/amd64/debian-12"},
    "Components": [
        {"Name": "Podman Engine", "Version": "4.3.1"},
        {"Name": "Conmon", "Version": "conmon version 2.1.6, commit: unknown"},
        {"Name": "OCI Runtime (runc)", "Version": "runc version 1.1.5+ds1"},
    ],
    "Version": "4.3.1",
    "ApiVersion": "1.41",
}


def test_the_engine_is_told_by_its_version_answer() -> None:
    assert engine_name(DOCKER_VERSION) == "Docker"
    assert engine_name(PODMAN_VERSION) == "Podman"
    assert profile_for(DOCKER_VERSION) is DOCKER
    assert profile_for(PODMAN_VERSION) is PODMAN
    # Docker Desktop and Docker CE name the platform; an answer without
    # components is Docker's too (the API's reference engine).
    assert profile_for({"Platform": {"Name": "Docker Engine - Community"}}) is DOCKER
    assert profile_for({}) is DOCKER


def test_on_docker_the_policy_is_spelled_as_before() -> None:
    kwargs = SandboxPolicy().host_config_kwargs(DOCKER)
    assert kwargs == SandboxPolicy().host_config_kwargs()
    assert kwargs["tmpfs"]["/work"].endswith(",uid=65534,gid=65534")
    assert set(kwargs["tmpfs"]) == {"/work", "/tmp"}
    assert kwargs["ulimits"] == [Ulimit(name="nofile", soft=1024, hard=1024)]
    assert SandboxPolicy().code_tmpfs(DOCKER).endswith(",uid=65534,gid=65534")


def test_on_podman_the_same_policy_is_spelled_for_podman() -> None:
    policy = SandboxPolicy(user="1000:1000")
    kwargs = policy.host_config_kwargs(PODMAN)
    tmpfs = kwargs["tmpfs"]
    # No uid=/gid= (Podman refuses them): its own U option gives the same owner.
    assert not any("uid=" in options or "gid=" in options for options in tmpfs.values())
    assert tmpfs["/work"].split(",")[-1] == "U"
    assert policy.code_tmpfs(PODMAN).split(",")[-1] == "U"
    assert "U" not in tmpfs["/tmp"].split(",")  # /tmp is everyone's (1777), as on Docker
    # The writable /var/tmp Podman adds on its own is covered, read-only.
    assert tmpfs["/var/tmp"].split(",")[0] == "ro"
    assert kwargs["ulimits"] == [
        Ulimit(name="nofile", soft=1024, hard=1024),
        Ulimit(name="nproc", soft=PODMAN.nproc, hard=PODMAN.nproc),
    ]
    # Everything else is the same policy.
    docker_kwargs = policy.host_config_kwargs(DOCKER)
    for key in set(kwargs) - {"tmpfs", "ulimits"}:
        assert kwargs[key] == docker_kwargs[key], key


def test_a_code_folder_entry_gives_the_folder_back_to_root() -> None:
    archive = tar_files({"main.sh": b"echo", "lib/x": b"x"}, folder="code")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = tar.getmembers()
    assert members[0].name == "code"  # first, before anything lands in it
    assert members[0].isdir()
    assert members[0].mode == 0o755
    assert {m.name for m in members} == {"code", "code/lib", "code/lib/x", "code/main.sh"}
    assert {(m.uid, m.gid) for m in members} == {(0, 0)}


def test_podman_hints_name_the_missing_piece() -> None:
    assert "catatonit" in PODMAN.hint('container create: container-init binary not found: "x"')
    assert PODMAN.hint("no such image") == ""
    assert DOCKER.hint("container-init binary not found") == ""


def test_an_inferred_oom_says_how_sure_it_is() -> None:
    policy = SandboxPolicy()
    reported = make_result(exit_code=137, oom_killed=True)
    inferred = make_result(exit_code=137, oom_killed=True, oom_certain=False)
    assert reported.status == inferred.status == "oom"
    assert reported.describe(policy) == "ran out of memory (limit 256 MiB) and was killed"
    assert inferred.describe(policy) == (
        "was killed (SIGKILL), most likely for running out of memory (limit 256 MiB): "
        "the engine did not report an OOM kill"
    )


def test_image_names_are_shown_as_dockermagic_gave_them() -> None:
    assert PODMAN.image_name("docker.io/dockermagic/python-deps:ab") == "dockermagic/python-deps:ab"
    assert PODMAN.image_name("localhost/dockermagic/python:offline") == "dockermagic/python:offline"
    assert DOCKER.image_name("localhost/x:1") == "localhost/x:1"  # a registry's name there
