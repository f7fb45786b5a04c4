"""The gateway's JupyterHub mode, pure logic: the ``hub`` configuration, the
Hub's user model mapped to the gateway's users, the token cache (a test
clock). The real Hub is in tests/integration/test_hub.py."""

from __future__ import annotations

from typing import Any

import pytest

from dockermagic.errors import InvalidArgumentError, LimitExceededError
from dockermagic.gateway.config import GatewayConfig, HubSettings, User
from dockermagic.gateway.hub import TokenCache

API = "http://127.0.0.1:8081/hub/api"


def hub_config(
    hub: dict[str, Any], env: dict[str, str] | None = None, **more: Any
) -> GatewayConfig:
    return GatewayConfig.from_dict({"hub": hub, **more}, environ=env or {})


def test_users_are_optional_with_a_hub() -> None:
    gateway = hub_config({"api_url": API + "/"})
    assert gateway.users == {}
    assert gateway.hub is not None
    assert gateway.hub.api_url == API
    assert gateway.hub.admins_are_teachers
    with pytest.raises(InvalidArgumentError, match="users"):
        GatewayConfig.from_dict({})


def test_listed_users_still_work_beside_the_hub() -> None:
    gateway = hub_config(
        {"api_url": API}, users={"teacher": {"token": "teacher-token-0123456", "role": "teacher"}}
    )
    assert gateway.user_for_token("teacher-token-0123456") == User(
        "teacher", gateway.users["teacher"].token_sha256, teacher=True
    )


def test_the_api_url_comes_from_the_services_environment() -> None:
    gateway = hub_config({}, {"JUPYTERHUB_API_URL": API})
    assert gateway.hub is not None
    assert gateway.hub.api_url == API
    with pytest.raises(InvalidArgumentError, match="JUPYTERHUB_API_URL"):
        hub_config({})
    with pytest.raises(InvalidArgumentError, match=r"hub\.api_url"):
        hub_config({"api_url": "file:///etc/passwd"})


def test_a_hub_started_service_listens_where_the_hub_says() -> None:
    env = {"JUPYTERHUB_API_URL": API, "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:10101"}
    gateway = hub_config({}, env)
    assert (gateway.host, gateway.port) == ("127.0.0.1", 10101)
    # The file's own address wins.
    gateway = hub_config({}, env, port=0)
    assert (gateway.host, gateway.port) == ("127.0.0.1", 0)


@pytest.mark.parametrize(
    "hub",
    [
        {"api_url": API, "teachers": "mrs-smith"},
        {"api_url": API, "network": [3]},
        {"api_url": API, "admins_are_teachers": "yes"},
        {"api_url": API, "cache_seconds": -1},
        {"api_url": API, "oauth": True},
        ["not", "an", "object"],
    ],
)
def test_bad_hub_settings_are_refused(hub: Any) -> None:
    with pytest.raises(InvalidArgumentError):
        hub_config(hub)


def settings(**changes: Any) -> HubSettings:
    return HubSettings(
        api_url=API,
        teachers=frozenset({"mrs-smith"}),
        teacher_groups=frozenset({"staff"}),
        network=frozenset({"carol"}),
        **changes,
    )


def model(name: str, **changes: Any) -> dict[str, Any]:
    return {"kind": "user", "name": name, "admin": False, "groups": [], **changes}


def test_hub_users_map_to_students_and_teachers() -> None:
    hub = settings()
    alice = hub.user_from_model(model("alice"))
    assert alice == User("alice", "", teacher=False, network=False)
    assert hub.user_from_model(model("mrs-smith")).teacher  # type: ignore[union-attr]
    assert hub.user_from_model(model("root", admin=True)).teacher  # type: ignore[union-attr]
    assert hub.user_from_model(model("t", groups=["staff", "x"])).teacher  # type: ignore[union-attr]
    assert hub.user_from_model(model("carol")).network  # type: ignore[union-attr]
    # Admins are not teachers when the teacher says so.
    strict = settings(admins_are_teachers=False)
    assert not strict.user_from_model(model("root", admin=True)).teacher  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "answer",
    [
        {"kind": "service", "name": "announcements"},
        {"kind": "user", "name": ""},
        {"kind": "user", "name": "x" * 256},
        {"kind": "user"},
        ["alice"],
        None,
    ],
)
def test_answers_without_a_user_give_none(answer: Any) -> None:
    assert settings().user_from_model(answer) is None


def test_a_hub_user_gets_the_ceiling_like_a_listed_one() -> None:
    gateway = hub_config({"api_url": API, "network": ["carol"]}, ceiling={"memory": "512m"})
    assert gateway.hub is not None
    alice = gateway.hub.user_from_model(model("alice"))
    assert alice is not None
    with pytest.raises(LimitExceededError, match="memory"):
        gateway.policy_for(alice, {"memory": "1g"})
    with pytest.raises(LimitExceededError, match="network"):
        gateway.policy_for(alice, {"network": True})
    carol = gateway.hub.user_from_model(model("carol"))
    assert carol is not None
    assert gateway.policy_for(carol, {"network": True}).network


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_keeps_answers_for_a_while() -> None:
    clock = Clock()
    cache = TokenCache(60, negative_seconds=5, clock=clock)
    alice = User("alice", "")
    assert cache.get("tok-a") == (False, None)
    cache.put("tok-a", alice)
    cache.put("bad", None)
    assert cache.get("tok-a") == (True, alice)
    assert cache.get("bad") == (True, None)
    clock.now += 5
    # An unknown token is asked again soon (it may have been made since).
    assert cache.get("bad") == (False, None)
    assert cache.get("tok-a") == (True, alice)
    clock.now += 55
    assert cache.get("tok-a") == (False, None)
    assert len(cache) == 0


def test_the_cache_holds_no_tokens_and_is_bounded() -> None:
    cache = TokenCache(60, max_entries=3, clock=Clock())
    for n in range(5):
        cache.put(f"token-{n}", User(f"u{n}", ""))
    assert len(cache) == 3
    assert cache.get("token-0") == (False, None)
    assert cache.get("token-4")[0]
    assert "token" not in TokenCache.key("token-4")
    assert len(TokenCache.key("token-4")) == 64


def test_no_cache_when_the_teacher_says_zero() -> None:
    cache = TokenCache(0, clock=Clock())
    cache.put("tok", User("alice", ""))
    assert cache.get("tok") == (False, None)
