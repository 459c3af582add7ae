"""The pure part of webhook delivery (domain/delivery): endpoints, signatures, verdicts,
the retry schedule and the records a delivery leaves on Kafka."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from domain.delivery.endpoints import Endpoint, kind_matches, parse_endpoints, shown_url
from domain.delivery.outcomes import classify
from domain.delivery.records import (
    EXCERPT_MAX_BYTES,
    RetryState,
    dead_letter,
    event_facts,
    excerpt,
    parse_dead_letter,
    replay_selected,
    retry_state,
)
from domain.delivery.schedule import (
    JITTER,
    MAX_WAIT_S,
    RetrySchedule,
    retry_after_s,
    tier_label,
    wait_s,
)
from domain.delivery.signing import Secret, parse_secret, signature, webhook_headers
from domain.errors import EndpointsError
from domain.wording.kinds import KINDS

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OLD = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()


def _doc(**fields: Any) -> dict[str, Any]:
    entry = {"name": "crm", "url": "https://crm.example.com/h", "kinds": ["*"], "secret": SECRET}
    entry.update(fields)
    return {"endpoints": [{k: v for k, v in entry.items() if v is not None}]}


def _one(**fields: Any) -> Endpoint:
    return parse_endpoints(_doc(**fields), {"S": SECRET, "OLD": OLD}, KINDS)[0]


# --- endpoints -----------------------------------------------------------------------------


def test_an_endpoint_reads_every_field() -> None:
    endpoint = _one(
        secret=None,
        secret_env="S",  # noqa: S106 - the name of a variable
        previous_secret_env="OLD",  # noqa: S106 - the name of a variable
        kinds=["threshold-hit", "custom.*"],
        plans=["starter"],
        accounts=["a1"],
        timeout_s=2.5,
    )
    assert endpoint.name == "crm"
    assert endpoint.kinds == ("threshold-hit", "custom.*")
    assert endpoint.plans == {"starter"}
    assert endpoint.accounts == {"a1"}
    assert [s.key for s in endpoint.secrets] == [KEY, bytes(range(100, 132))]
    assert endpoint.timeout_s == 2.5


def test_a_kind_pattern_matching_no_kind_of_the_catalog_is_reported() -> None:
    endpoint = _one(kinds=["threshold-hit", "custom.support-burst", "custom.suport", "custom.*"])
    kinds = [*KINDS, "custom.support-burst"]
    assert endpoint.kinds_matching_nothing(kinds) == ("custom.suport",)
    # Wildcards stand for rules to come: never reported, even in a catalog without rules.
    assert endpoint.kinds_matching_nothing(KINDS) == ("custom.support-burst", "custom.suport")
    assert _one(kinds=["*"]).kinds_matching_nothing(KINDS) == ()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/T0K3N?key=s3cr3t", "https://hooks.example.com/..."),
        ("http://user:pw@127.0.0.1:8099/hook", "http://127.0.0.1:8099/..."),
        ("http://[::1]:81/x", "http://::1:81/..."),
        ("http://[::1/x", "<url not shown>"),
    ],
)
def test_a_url_is_shown_without_path_query_or_user_info(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_secrets_are_never_shown() -> None:
    endpoint = _one(previous_secret=OLD)
    shown = repr(endpoint) + str(endpoint.secrets) + repr(endpoint.secrets[0])
    assert SECRET.removeprefix("whsec_") not in shown
    assert "secrets" not in repr(endpoint)
    assert repr(Secret(KEY)) == "Secret(***)"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad Name"}, "endpoint #1: name: expected"),
        ({"url": "ftp://x"}, "endpoint 'crm': url: expected an http"),
        ({"url": None}, "endpoint 'crm': url:"),
        ({"url": "https://h:99999/t"}, "endpoint 'crm': url: not a valid URL (Port out of range"),
        ({"url": "https://[::1/t"}, "endpoint 'crm': url: not a valid URL (Invalid IPv6 URL)"),
        ({"kinds": []}, "endpoint 'crm': kinds: expected a non-empty list"),
        ({"kinds": ["threshold-hits"]}, "endpoint 'crm': kinds: unknown kind 'threshold-hits'"),
        ({"kinds": ["custom.Bad"]}, "kinds: unknown kind"),
        ({"plans": "starter"}, "endpoint 'crm': plans: expected a non-empty list"),
        ({"accounts": []}, "endpoint 'crm': accounts:"),
        ({"secret": None}, "endpoint 'crm': secret_env: missing"),
        ({"secret_env": "S"}, "endpoint 'crm': secret: give secret or secret_env, not both"),
        ({"secret": None, "secret_env": "NOPE"}, "secret_env: the environment variable NOPE"),
        ({"secret": "abc"}, "endpoint 'crm': secret: must start with 'whsec_'"),
        ({"secret": "whsec_!!"}, "secret: is not whsec_ followed by standard base64"),
        ({"secret": "whsec_" + base64.b64encode(b"short").decode()}, "24 to 64 bytes"),
        ({"previous_secret": "nope"}, "endpoint 'crm': previous_secret: must start"),
        ({"timeout_s": 0}, "endpoint 'crm': timeout_s: expected seconds"),
        ({"timeout_s": True}, "timeout_s"),
        ({"timeout": 3}, "endpoint 'crm': timeout: unknown field"),
    ],
)
def test_each_error_names_the_endpoint_and_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(EndpointsError, match=re.escape(message)) as caught:
        _one(**fields)
    assert SECRET.removeprefix("whsec_") not in str(caught.value)
    assert OLD.removeprefix("whsec_") not in str(caught.value)


def test_names_are_unique_and_the_document_is_checked() -> None:
    doc = _doc()
    doc["endpoints"].append(dict(doc["endpoints"][0]))
    with pytest.raises(EndpointsError, match="endpoint 'crm': name: used twice"):
        parse_endpoints(doc, {}, KINDS)
    with pytest.raises(EndpointsError, match="unknown table or key 'endpoint'"):
        parse_endpoints({"endpoint": []}, {}, KINDS)
    with pytest.raises(EndpointsError, match="array of tables"):
        parse_endpoints({"endpoints": {"name": "x"}}, {}, KINDS)
    assert parse_endpoints({}, {}, KINDS) == ()


def _oracle(patterns: list[str], plans: list[str] | None, accounts: list[str] | None):  # type: ignore[no-untyped-def]
    """An independent statement of matching: a kind pattern as a shell-like glob."""

    def wants(kind: str, plan: str | None, account: str) -> bool:
        globbed = [re.fullmatch(re.escape(p).replace(r"\*", ".*"), kind) for p in patterns]
        return (
            any(globbed)
            and (plans is None or plan in plans)
            and (accounts is None or account in accounts)
        )

    return wants


_kind = st.sampled_from([*KINDS, "custom.a", "custom.b-2"])
_pattern = st.sampled_from(["*", "custom.*", *KINDS, "custom.a"])
_ids = st.sampled_from(["a1", "a2", "starter", "growth", "x|y"])


@given(
    patterns=st.lists(_pattern, min_size=1, max_size=4),
    plans=st.none() | st.lists(_ids, min_size=1, max_size=3),
    accounts=st.none() | st.lists(_ids, min_size=1, max_size=3),
    kind=_kind,
    plan=st.none() | _ids,
    account=_ids,
)
def test_matching_agrees_with_a_glob_oracle(
    patterns: list[str],
    plans: list[str] | None,
    accounts: list[str] | None,
    kind: str,
    plan: str | None,
    account: str,
) -> None:
    endpoint = _one(kinds=patterns, plans=plans, accounts=accounts)
    assert endpoint.wants(kind, plan, account) == _oracle(patterns, plans, accounts)(
        kind, plan, account
    )


def test_custom_star_is_only_the_rules() -> None:
    assert kind_matches("custom.*", "custom.support-heavy")
    assert not kind_matches("custom.*", "threshold-hit")
    assert kind_matches("*", "birthday")
    assert not kind_matches("milestone", "milestones")


# --- signing -------------------------------------------------------------------------------


@given(
    body=st.binary(max_size=300),
    msg_id=st.text(alphabet="0123456789abcdef", min_size=1, max_size=64),
    key=st.binary(min_size=24, max_size=64),
)
def test_standardwebhooks_verifies_our_signature(body: bytes, msg_id: str, key: bytes) -> None:
    now = int(datetime.now(UTC).timestamp())
    secret = "whsec_" + base64.b64encode(key).decode()
    headers = webhook_headers(msg_id, now, body, [parse_secret(secret)])
    Webhook(secret).verify(body, headers, json_parse=False)
    assert headers["webhook-id"] == msg_id
    assert headers["webhook-timestamp"] == str(now)
    assert headers["content-type"] == "application/json"
    expected = Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, UTC), body)
    assert (
        headers["webhook-signature"]
        == expected
        == signature(parse_secret(secret), msg_id, now, body)
    )


def test_during_a_rotation_either_secret_verifies() -> None:
    now = int(datetime.now(UTC).timestamp())
    body = b'{"event_id":"e1"}'
    headers = webhook_headers("e1", now, body, [parse_secret(SECRET), parse_secret(OLD)])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(body, headers)
    Webhook(OLD).verify(body, headers)
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)
    with pytest.raises(ValueError, match="at least one secret"):
        webhook_headers("e1", now, body, [])


# --- verdicts ------------------------------------------------------------------------------


@given(st.none() | st.integers(min_value=100, max_value=599))
def test_verdicts(status: int | None) -> None:
    verdict = classify(status)
    if status is None or status in (408, 429) or status >= 500:
        assert verdict == "retry"
    elif status // 100 == 2:
        assert verdict == "ack"
    else:
        assert verdict == "dead"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, "ack"), (204, "ack"), (410, "dead"), (400, "dead"), (404, "dead"), (302, "dead"),
     (429, "retry"), (408, "retry"), (500, "retry"), (503, "retry"), (None, "retry")],
)  # fmt: skip
def test_verdict_examples(status: int | None, verdict: str) -> None:
    assert classify(status) == verdict


# --- the schedule --------------------------------------------------------------------------

_delay = st.floats(min_value=0.001, max_value=MAX_WAIT_S)


@given(
    delay=_delay,
    retry_after=st.none() | st.floats(min_value=0, max_value=10 * MAX_WAIT_S),
    spread=st.floats(min_value=-1, max_value=1),
)
def test_the_wait_honours_jitter_retry_after_and_the_cap(
    delay: float, retry_after: float | None, spread: float
) -> None:
    wait = wait_s(delay, retry_after, spread)
    assert wait <= MAX_WAIT_S
    assert wait >= min(delay * (1 - JITTER), MAX_WAIT_S) - 1e-9
    if retry_after is not None:
        assert wait >= min(retry_after, MAX_WAIT_S)
        assert wait <= max(delay * (1 + JITTER), min(retry_after, MAX_WAIT_S)) + 1e-9
    else:
        assert wait <= delay * (1 + JITTER) + 1e-9


def test_jitter_spreads_both_ways() -> None:
    assert wait_s(10, None, -1) == pytest.approx(9)
    assert wait_s(10, None, 1) == pytest.approx(11)
    assert wait_s(10, 30, 1) == 30
    assert wait_s(10, 10 * MAX_WAIT_S, 0) == MAX_WAIT_S
    with pytest.raises(ValueError, match="spread"):
        wait_s(10, None, 1.5)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    later = datetime.fromtimestamp(now + 120, UTC)
    assert retry_after_s("30", now) == 30
    assert retry_after_s(" 0 ", now) == 0
    assert retry_after_s(format_datetime(later, usegmt=True), now) == pytest.approx(120)
    past = datetime.fromtimestamp(now - 120, UTC)
    assert retry_after_s(format_datetime(past, usegmt=True), now) == 0
    assert retry_after_s(None, now) is None
    assert retry_after_s("soon", now) is None
    assert retry_after_s("-5", now) is None


def test_the_default_schedule() -> None:
    schedule = RetrySchedule((5, 60, 600, 3600, 21600))
    assert schedule.labels() == ("5s", "1m", "10m", "1h", "6h")
    assert schedule.max_attempts == 6
    assert [schedule.next_tier(n) for n in range(1, 7)] == [0, 1, 2, 3, 4, None]
    assert tier_label(0.2) == "200ms"
    assert tier_label(90) == "90s"
    assert tier_label(1.5) == "1500ms"
    for bad in [(), (0,), (5, 5), (MAX_WAIT_S + 1,), (60, 60.0004)]:
        with pytest.raises(ValueError):
            RetrySchedule(tuple(float(b) for b in bad))


@given(st.lists(_delay, min_size=1, max_size=6, unique=True))
def test_a_schedule_is_tried_once_per_tier(delays: list[float]) -> None:
    try:
        schedule = RetrySchedule(tuple(delays))
    except ValueError:
        return  # two delays within a millisecond: one tier name
    tiers = [schedule.next_tier(n) for n in range(1, schedule.max_attempts + 1)]
    assert tiers == [*range(len(delays)), None]
    assert schedule.next_tier(0) is None


# --- records -------------------------------------------------------------------------------

EVENT = orjson.dumps(
    {
        "schema_version": 1,
        "event_id": "e" * 64,
        "kind": "threshold-hit",
        "account_id": "acct-1",
        "plan": {"id": "starter"},
        "emitted_at": "2026-12-07T10:00:00Z",
    }
)


def test_event_facts() -> None:
    facts = event_facts(EVENT)
    assert (facts.event_id, facts.kind, facts.account_id, facts.plan_id, facts.emitted_at) == (
        "e" * 64,
        "threshold-hit",
        "acct-1",
        "starter",
        "2026-12-07T10:00:00Z",
    )
    for bad in [b"nope", b"[]", b'{"event_id":"x","kind":"k"}', b'{"event_id":1}']:
        with pytest.raises(ValueError):
            event_facts(bad)


@given(
    attempts=st.integers(1, 10),
    due=st.integers(0, 2**53),
    first=st.integers(0, 2**53),
    status=st.none() | st.integers(100, 599),
    error=st.text(max_size=50),
)
def test_retry_state_goes_through_headers(
    attempts: int, due: int, first: int, status: int | None, error: str
) -> None:
    state = RetryState(attempts, due, first, status, error)
    back = retry_state(state.headers())
    assert (back.attempts, back.due_ms, back.first_attempt_ms, back.last_status) == (
        attempts,
        due,
        first,
        status,
    )
    assert back.last_error == error.encode("utf-8", "replace")[:200].decode("utf-8", "replace")
    with pytest.raises(ValueError):
        retry_state([])


@given(st.binary(max_size=3000) | st.text(max_size=1500).map(str.encode))
def test_an_excerpt_is_at_most_a_kib(body: bytes) -> None:
    text = excerpt(body)
    assert len(text.encode()) <= EXCERPT_MAX_BYTES
    if len(body) <= EXCERPT_MAX_BYTES:
        try:
            assert text == body.decode()
        except UnicodeDecodeError:
            pass


def test_a_dead_letter_keeps_the_event_and_what_happened() -> None:
    value = dead_letter(
        endpoint="crm",
        value=EVENT,
        facts=event_facts(EVENT),
        reason="rejected",
        attempts=1,
        last_status=410,
        body=b"gone" * 1000,
        error="HTTP 410",
        first_attempt_ms=1_800_000_000_000,
        last_attempt_ms=1_800_000_000_250,
    )
    letter = parse_dead_letter(value)
    assert letter["event"].encode() == EVENT
    assert letter["endpoint"] == "crm"
    assert letter["event_id"] == "e" * 64
    assert letter["account_id"] == "acct-1"
    assert letter["last_status"] == 410
    assert letter["reason"] == "rejected"
    assert len(letter["body_excerpt"]) == EXCERPT_MAX_BYTES
    assert letter["first_attempt_at"] == "2027-01-15T08:00:00Z"
    assert letter["last_attempt_at"] == "2027-01-15T08:00:00.250Z"
    with pytest.raises(ValueError):
        parse_dead_letter(b'{"endpoint": 1}')


def _letter(endpoint: str, event_id: str, attempts: int) -> Any:
    return {
        "endpoint": endpoint,
        "event_id": event_id,
        "event": f"{{{event_id}}}",
        "attempts": attempts,
    }


def test_replay_selects_each_delivery_once_the_last_written_winning() -> None:
    letters = [
        ("0:1", _letter("a", "e1", 1)),
        ("0:2", _letter("b", "e1", 6)),
        ("1:1", _letter("a", "e2", 6)),
        ("0:3", _letter("a", "e1", 2)),
    ]

    def chosen(*args: Any) -> list[tuple[str, str, str | None, int]]:
        return [(p, c["endpoint"], c["event_id"], c["attempts"]) for p, c in replay_selected(*args)]

    assert chosen(letters, None, None) == [
        ("0:2", "b", "e1", 6),
        ("1:1", "a", "e2", 6),
        ("0:3", "a", "e1", 2),
    ]
    assert [c[2] for c in chosen(letters, "a", None)] == ["e2", "e1"]
    assert [c[1] for c in chosen(letters, None, "e1")] == ["b", "a"]
    assert replay_selected(letters, "c", None) == []
    # Replayed before: left, unless it died again (a later letter) or its id is asked for.
    assert [c[0] for c in chosen(letters, None, None, {"0:2", "0:1"})] == ["1:1", "0:3"]
    assert [c[0] for c in chosen(letters, "a", None, {"0:3", "1:1"})] == []
    assert [c[0] for c in chosen(letters, None, "e1", {"0:2", "0:3"})] == ["0:2", "0:3"]


def test_the_schedule_setting() -> None:
    from config.settings import load_settings
    from domain.errors import SettingsError

    assert load_settings({}).deliver_schedule_s == (5, 60, 600, 3600, 21600)
    schedule = load_settings({"MOMENTS_DELIVER_SCHEDULE": "200ms, 1s,2m"}).deliver_schedule_s
    assert schedule == (0.2, 1, 120)
    assert RetrySchedule(schedule).labels() == ("200ms", "1s", "2m")
    for bad in ("0s", "5s,5s", "7h", "soon", "5s,,x"):
        with pytest.raises(SettingsError, match="MOMENTS_DELIVER_SCHEDULE"):
            load_settings({"MOMENTS_DELIVER_SCHEDULE": bad})


@pytest.mark.parametrize("value", ["\u00b2", "9" * 400, "9" * 5000, "1" * 30])
def test_retry_after_never_raises_on_what_an_endpoint_sends(value: str) -> None:
    """Review: a Retry-After of non-ASCII digits (``²`` passes str.isdigit but not int), or
    one too large for a float or for int()'s digit limit, raised out of the deliverer; the
    record was then read again and POSTed again forever. Unreadable is None; huge is capped
    by wait_s."""
    now = 1_800_000_000.0
    got = retry_after_s(value, now)
    assert got is None or got >= 0
    assert wait_s(5, got, 0) <= MAX_WAIT_S


@pytest.mark.parametrize("key", ["secret_env", "previous_secret_env"])
def test_a_secret_given_where_an_env_var_name_goes_is_not_shown(key: str) -> None:
    """Review: ``secret_env = "whsec_..."`` (the secret itself where its variable's name goes, an
    easy slip) was echoed in the error, "the environment variable whsec_... is not set": the
    secret in the deliverer's stderr and logs."""
    fields: dict[str, Any] = {key: SECRET}
    if key == "secret_env":
        fields["secret"] = None
    with pytest.raises(EndpointsError, match=re.escape(f"endpoint 'crm': {key}")) as caught:
        _one(**fields)
    assert SECRET.removeprefix("whsec_") not in str(caught.value)


@given(
    delays=st.lists(
        st.integers(min_value=1, max_value=21_600), min_size=1, max_size=6, unique=True
    ).map(sorted),
    wait=st.floats(min_value=0.001, max_value=21_600.0),
)
def test_a_retry_waits_in_the_first_tier_whose_delay_covers_its_wait(
    delays: list[int], wait: float
) -> None:
    schedule = RetrySchedule(tuple(float(d) for d in delays))
    tier = schedule.tier_for_wait(wait)
    covering = [i for i, d in enumerate(delays) if wait <= d * 1.1]
    # Oracle: the first covering tier; past them all, the last (no tier holds a longer wait).
    assert tier == (covering[0] if covering else len(delays) - 1)
    # Every jittered wait of a tier's own delay stays in that tier or an earlier one.
    for index, delay in enumerate(delays):
        for spread in (-1.0, 0.0, 1.0):
            assert schedule.tier_for_wait(wait_s(delay, None, spread)) <= index
