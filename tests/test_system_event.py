"""One whole captioned event through the units the Ansible roles install (issue 12, item 4).

The roles are converged for real on this machine in the split topology (the orchestrator
unit, a separate captioner unit, ngircd and the Prometheus config), into a throw-away
prefix (tests/converge.py; the session's site, which tests/test_ansible_converge.py
checks file by file). Where systemd is not PID 1 (containers, this CI), nothing
starts the units, so the test starts each installed unit's ExecStart line itself, as its
user with its environment (tests/ansible_harness.py); the sandboxing directives are then
not enforced. Where systemd runs, the units are started with systemctl.

Then one event, through real interfaces only:

1. a real slapd holds the group ``devs`` with Alice Liddell and Bob Builder; the
   orchestrator's LDAP, admin token, producer and Prosody secrets come from the
   converge's variables;
2. the room ``keynote`` is created through ``POST /api/v1/rooms`` restricted to ``devs``;
3. Alice and Bob log in through the login form and press Join: the 303 to Jitsi carries
   their JWT (``context.user.name``, ``room``);
4. a fake Prosody posts the meeting and both occupants (endpoint id = MUC nick, name from
   the JWT) where and with the secret the jitsi role's rendered prosody site names;
5. a fake videobridge streams real Korean speech of both, Opus in MediaJson at real
   pace, to the URL Jicofo's rendered ``url-template`` yields for the meeting;
6. the orchestrator is killed with SIGKILL mid-speech and started again.

Asserted: captions with the attendees' names reach the captions page in a real headless
Chromium, the transcript under its persistent identifier (page, .txt, .vtt), the IRC
channel as an independent client sees it, and a real Prometheus scraping per the rendered
config (caption and videobridge metrics); no final the captioner produced is lost or
stored twice across the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
import pytest

from bench.harness.fake_jvb import CURRENT, load_fixture
from bench.harness.ircservers import RawClient
from bench.harness.slapd import NAMES, PASSWORDS, slapd_binary
from plenary.corpus import CorpusMissing, Utterance, load_corpus
from plenary.scoring import cer
from plenary.settings import load_settings
from tests.ansible_harness import tool
from tests.browser import Browser, chromium_binary
from tests.converge import JITSI_SECRET, Converged
from tests.fake_prosody import FakeProsody, Room
from tests.fake_videobridge import BridgeHttp, Script, StreamingBridge, meeting_script
from tests.system_helpers import (
    Prometheus,
    Units,
    api,
    eventually,
    holds,
    join_token,
    listening,
    render_jitsi,
    session_cookie,
    setting,
    start_slapd,
    wait_js,
    web_login,
)

SLUG = "keynote"  # the converge routes keynote's captions to #keynote on its ngircd
CHANNEL = "#keynote"
GROUP = "devs"
MEMBERS = {"alice": "a1b2c3d4", "bob": "e5f6a7b8"}  # LDAP uid → videobridge endpoint id
SPEECH = {"alice": ["pfa00001", "pfa00002", "pfa00003"], "bob": ["pma00001", "pma00002",
                                                                  "pma00003"]}  # fmt: skip
KILL_AFTER_FINALS = 2  # the orchestrator dies once this many finals came back to the bridge

pytestmark = [
    pytest.mark.speech,
    pytest.mark.timeout(900),
    pytest.mark.skipif(tool("ansible-playbook") is None, reason="ansible-core is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="converging creates a system user: needs root"),
    pytest.mark.skipif(shutil.which("ngircd") is None, reason="ngircd is not installed"),
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed"),
    pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed"),
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make deps)"),
    pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed"),
    pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed"),
    pytest.mark.skipif(
        not Path("/usr/bin/python3.11").exists(), reason="the role's venv needs /usr/bin/python3.11"
    ),
]


def _speech() -> dict[str, list[Utterance]]:
    try:
        corpus = {u.id: u for u in load_corpus(load_settings().speech_dir, "ko")}
    except CorpusMissing as exc:
        pytest.skip(f"reference speech not available: {exc}")
    missing = [i for ids in SPEECH.values() for i in ids if i not in corpus]
    if missing:
        pytest.skip(f"reference speech lacks {missing}")
    return {who: [corpus[i] for i in ids] for who, ids in SPEECH.items()}


# --- the deployment ---


@dataclass
class Deployment:
    """The converged site (tests/converge.py) and what this test gave it."""

    site: Converged
    admin_token: str
    ldap_port: int

    @property
    def prefix(self) -> Path:
        return Path(self.site.prefix)

    @property
    def ports(self) -> dict[str, int]:
        return dict(self.site.ports)

    @property
    def secrets(self) -> dict[str, str]:
        return dict(self.site.secrets)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports['orchestrator']}"

    def unit(self, name: str) -> Path:
        return self.prefix / "systemd" / name

    def jitsi_variables(self) -> dict[str, Any]:
        """What the jitsi role gets on the same site: where Plenary and its captioner are,
        and the secrets they share with Prosody and the videobridge."""
        return {
            "jitsi_meet_server_name": "meet.ci.test",
            "plenary_public_url": self.base,
            "plenary_captioner_port": self.ports["captioner"],
            "plenary_captioner_access_token": self.secrets["captioner_access_token"],
            "plenary_event_sync_secret": self.secrets["event_sync_secret"],
        }


@pytest.fixture(scope="module")
def deployment(converged_site: Converged) -> Deployment:
    """The session's site (tests/conftest.py), converged with this test's directory, admin
    token and bridge poller (tests/converge.py ``site_variables``); its second run is
    tests/test_ansible_converge.py's to check."""
    site = converged_site
    assert site.first.returncode == 0, site.first.explain()
    ldap_port = urlsplit(site.variables["plenary_ldap"]["url"]).port
    assert ldap_port is not None
    return Deployment(site, site.variables["plenary_admin_token"], ldap_port)


# --- the event ---


@dataclass
class Observed:
    """What the event produced, as each reader saw it."""

    script: Script | None = None
    url_template: str = ""
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    bridge: StreamingBridge | None = None
    killed_at: float | None = None  # script second at which the orchestrator died
    restarted_in: float | None = None
    restarted_at: float | None = None  # script second at which it listened again
    finals_while_down: set[str] = field(default_factory=set)
    stored: list[dict[str, Any]] = field(default_factory=list)
    page_live: str = ""
    page_reloaded: str = ""
    irc: list[str] = field(default_factory=list)
    irc_channel: str = ""  # protected, public or "not protected: why", as the room page says
    pid: str = ""
    transcript_html: str = ""
    transcript_txt: str = ""
    transcript_vtt: str = ""
    prometheus: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    delivered_finals: float | None = None  # the captioner's own count, from its /metrics
    errors: list[str] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)  # step → seconds into the event
    t0: float = field(default_factory=time.monotonic)

    def mark(self, step: str) -> None:
        self.marks[step] = round(time.monotonic() - self.t0, 1)


async def _all_captions(http: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        status, body = await api(
            http, "GET", f"{base}/api/v1/rooms/{SLUG}/captions", params={"after": after,
                                                                       "limit": 1000}
        )  # fmt: skip
        assert status == 200, f"GET /api/v1/rooms/{SLUG}/captions: HTTP {status} {body}"
        events += body["events"]
        if not body["events"]:
            return events
        after = body["next_after"]


def _room_body() -> dict[str, Any]:
    now = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None)
    return {
        "slug": SLUG,
        "title": "Keynote",
        "languages": ["ko"],
        "schedule": {"start": (now - timedelta(minutes=5)).isoformat(),
                     "end": (now + timedelta(hours=2)).isoformat(), "timezone": "UTC"},
        "policy": {"access": [{"kind": "ldap_group", "group": GROUP}],
                   "moderators": [{"kind": "user", "source": "ldap", "name": "alice"}]},
        "contact": "events@example.org",
        "irc_channel": CHANNEL,
        "transcript_retention_days": 30,  # else finals are live only: no transcript
    }  # fmt: skip


async def _prosody(prosody_cfg: str, meeting: str, tokens: dict[str, dict[str, Any]]) -> None:
    """The meeting and its occupants, posted where and how the rendered prosody site
    tells mod_plenary_occupants to (``plenary_api_prefix``, ``plenary_api_secret``)."""
    prefix = urlsplit(setting(prosody_cfg, "plenary_api_prefix"))
    room = Room(SLUG, meeting_id=meeting)
    async with aiohttp.ClientSession(base_url=f"{prefix.scheme}://{prefix.netloc}") as http:
        prosody = FakeProsody(http, setting(prosody_cfg, "plenary_api_secret"), prefix.path)
        answers = [await prosody.room_created(room)]
        for n, (uid, endpoint) in enumerate(MEMBERS.items(), start=1):
            user = tokens[uid]["context"]["user"]
            answers.append(await prosody.occupant_joined(room, endpoint, user, count=n))
        for answer in answers:
            assert answer.status < 300, f"{answer.url}: {answer.status} {await answer.text()}"


async def run_event(dep: Deployment, speech: dict[str, list[Utterance]], tmp: Path) -> Observed:
    """The event, step by step; what each reader saw is recorded for the tests below."""
    seen = Observed()
    async with contextlib.AsyncExitStack() as stack:
        units, prometheus = await _start_site(dep, tmp, stack)
        seen.mark("units listening")
        await _create_room(dep)
        members = {uid: await _member_joins(dep, uid, seen, stack) for uid in MEMBERS}
        jitsi = await asyncio.to_thread(
            render_jitsi, tmp, ["jicofo.conf", "prosody.cfg.lua"], dep.jitsi_variables()
        )
        meeting = str(uuid.uuid4())
        await _prosody(jitsi["prosody.cfg.lua"], meeting, seen.tokens)
        seen.mark("logged in, joined, prosody posted")
        irc = await _irc_attendee(dep, members["bob"], seen)
        stack.push_async_callback(irc.close)

        seen.url_template = template = setting(jitsi["jicofo.conf"], "url-template")
        url = template.replace("{{MEETING_ID}}", meeting)
        access = dep.secrets["captioner_access_token"]
        if access not in url:  # its own test fails on this; the rest can still be seen
            seen.errors.append(f"the rendered url-template has no captioner token: {template}")
            url += f"&token={access}"
        turns = [(MEMBERS[who], u) for pair in zip(*(speech[w] for w in MEMBERS), strict=True)
                 for who, u in zip(MEMBERS, pair, strict=True)]  # fmt: skip
        seen.script = await asyncio.to_thread(meeting_script, turns)
        seen.bridge = StreamingBridge(url)

        browser = await stack.enter_async_context(Browser.start(tmp / "chromium"))
        page = await browser.new_page()
        cookie = session_cookie(members["alice"])
        if cookie:  # Alice's login, so the page stays readable if captions become members-only
            await page.send("Network.setCookie", name=cookie[0], value=cookie[1], url=dep.base,
                            httpOnly=True)  # fmt: skip
        await page.goto(f"{dep.base}/r/{SLUG}/captions")
        await wait_js(page, "document.getElementById('status').textContent === 'Live.'", 20)

        progress = {"at": 0.0}
        killer = asyncio.create_task(_kill_mid_speech(dep, units, progress, seen))
        seen.mark("speech begins")
        await seen.bridge.run(seen.script, on_progress=lambda at: progress.update(at=at))
        seen.mark("speech and results done")
        try:
            await asyncio.wait_for(killer, 120)
        except Exception as exc:  # recorded; the tests assert on it
            seen.errors.append(f"kill/restart: {exc!r}")
        await _read_everything(dep, members["alice"], page, irc, prometheus, seen)
    return seen


async def _start_site(
    dep: Deployment, tmp: Path, stack: contextlib.AsyncExitStack
) -> tuple[Units, Prometheus]:
    """slapd, the videobridge's HTTP side, ngircd, both units and Prometheus; all stopped
    when ``stack`` closes."""
    slapd = await asyncio.to_thread(start_slapd, tmp / "slapd", dep.ldap_port)
    stack.callback(slapd.stop)
    videobridge = BridgeHttp(load_fixture(CURRENT))
    await videobridge.start(dep.ports["videobridge"])
    stack.push_async_callback(videobridge.stop)
    with (tmp / "ngircd.log").open("wb") as log:
        ngircd = subprocess.Popen(
            ["ngircd", "--nodaemon", "--config", str(dep.prefix / "etc/ngircd/ngircd.conf")],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    stack.callback(ngircd.wait, 10)
    stack.callback(ngircd.terminate)
    units = Units(dep.prefix / "systemd", tmp)
    stack.callback(units.stop_all)
    units.start("plenary-orchestrator.service")
    units.start("plenary-captioner.service")
    prometheus = Prometheus(dep.prefix / "etc" / "prometheus" / "prometheus.yml", tmp / "prom")
    stack.callback(prometheus.stop)
    prometheus.start()
    for name, port in (
        ("plenary-orchestrator.service", dep.ports["orchestrator"]),
        ("plenary-captioner.service", dep.ports["captioner"]),
    ):
        await asyncio.to_thread(units.wait_for_port, name, port)
    await eventually(lambda: listening(dep.ports["irc"]), 20, "ngircd to listen")
    return units, prometheus


async def _create_room(dep: Deployment) -> None:
    async with aiohttp.ClientSession() as http:
        admin = {"Authorization": f"Bearer {dep.admin_token}"}
        status, body = await api(http, "POST", f"{dep.base}/api/v1/rooms",
                                  json=_room_body(), headers=admin)  # fmt: skip
    assert status == 201, f"creating the room: {status} {body}"


async def _member_joins(
    dep: Deployment, uid: str, seen: Observed, stack: contextlib.AsyncExitStack
) -> aiohttp.ClientSession:
    """Log in through the form and press Join; the session (cookie) is kept."""
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[dep.base])
    http = await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=jar))
    await web_login(http, dep.base, uid, PASSWORDS[uid])
    _, raw = await join_token(http, dep.base, SLUG)
    seen.tokens[uid] = jwt.decode(
        raw, JITSI_SECRET, algorithms=["HS256"], audience="jitsi", issuer="plenary"
    )
    return http


async def _irc_attendee(dep: Deployment, http: aiohttp.ClientSession, seen: Observed) -> RawClient:
    """An attendee's own IRC client in the room's channel. A restricted room's channel is
    keyed by the relay; the room page shows the key to those admitted, and whether the
    relay could set it."""
    key, state = "", ""

    async def told() -> bool:
        nonlocal key, state
        status, page = await api(http, "GET", f"{dep.base}/r/{SLUG}")
        found = re.search(rf"<code>/join {re.escape(CHANNEL)} ([^<\s]+)</code>", page)
        key = html.unescape(found.group(1)) if found else ""
        if "The relay has set the channel key" in page:
            state = "protected"
        elif "This IRC channel is not protected" in page:
            state = (
                "not protected: " + re.sub(r"<[^>]+>", "", page.split("not protected:")[1])[:300]
            )
        elif "key" not in page.partition("IRC channel")[2]:
            state = "public"
        return status == 200 and state in ("protected", "public")

    try:  # the relay looks at the table every few seconds while keynote is missing from it
        await eventually(told, 30, f"the room page to say that {CHANNEL} is keyed")
    except AssertionError as exc:
        seen.errors.append(str(exc))
    seen.irc_channel = state
    client = RawClient(dep.ports["irc"], "attendee")
    await client.open()
    await client.join(CHANNEL, key)
    return client


async def _kill_mid_speech(
    dep: Deployment, units: Units, progress: dict[str, float], seen: Observed
) -> None:
    """SIGKILL after KILL_AFTER_FINALS finals came back to the bridge; start the unit again
    once the captioner has produced another final while the orchestrator was down."""
    bridge, script = seen.bridge, seen.script
    assert bridge is not None and script is not None
    await eventually(
        lambda: holds(len(bridge.finals()) >= KILL_AFTER_FINALS),
        script.duration + 30, f"{KILL_AFTER_FINALS} finals back at the bridge", every=0.1,
    )  # fmt: skip
    seen.killed_at = progress["at"]
    units.kill9("plenary-orchestrator.service")
    seen.mark("orchestrator killed")
    before = {m["message_id"] for m in bridge.finals()}
    await eventually(
        lambda: holds(len(bridge.finals()) > len(before)),
        script.duration + 30, "a final produced while the orchestrator is down", every=0.1,
    )  # fmt: skip
    seen.finals_while_down = {m["message_id"] for m in bridge.finals()} - before
    began = time.monotonic()
    units.start("plenary-orchestrator.service")
    port = dep.ports["orchestrator"]
    await asyncio.to_thread(units.wait_for_port, "plenary-orchestrator.service", port)
    seen.restarted_in = time.monotonic() - began
    seen.restarted_at = progress["at"]
    seen.mark("orchestrator listening again")


async def _read_everything(
    dep: Deployment,
    http: aiohttp.ClientSession,
    page: Any,
    irc: RawClient,
    prometheus: Prometheus,
    seen: Observed,
) -> None:
    """Every reader, each with a bounded wait; a timeout is recorded, not raised."""
    assert seen.bridge is not None
    finals = {r["message_id"] for r in seen.bridge.finals()}

    async def stored_all() -> list[dict[str, Any]] | None:
        events = await _all_captions(http, dep.base)
        return events if {e["message_id"] for e in events} >= finals else None

    try:
        await eventually(stored_all, 60, "every final in the room's JSON poll")
    except AssertionError as exc:
        seen.errors.append(str(exc))
    try:
        seen.stored = await _all_captions(http, dep.base)
    except AssertionError as exc:
        seen.errors.append(f"the room's JSON poll: {exc}")
    seen.mark("all finals stored")
    names = [t["context"]["user"]["name"] for t in seen.tokens.values()]
    lines = "document.getElementById('lines').innerText"

    async def live_page() -> str | None:
        text: str = await page.evaluate(lines)
        ok = all(n in text for n in names) and text.count("\n") + 1 >= len(finals)
        return text if ok else None

    try:
        seen.page_live = await eventually(live_page, 30, "the live captions page")
    except AssertionError as exc:
        seen.errors.append(str(exc))
        seen.page_live = await page.evaluate(lines)
    await page.goto(f"{dep.base}/r/{SLUG}/captions")
    seen.page_reloaded = await page.evaluate(lines)
    await _read_transcript(http, dep.base, seen)
    seen.mark("pages and transcript read")

    def every_speaker_in_irc() -> bool:
        return all(any(n.replace(" ", "_") in t for t in irc.texts()) for n in names)

    try:
        await irc.wait_for(every_speaker_in_irc, 30)
    except TimeoutError:
        seen.errors.append("IRC: not every speaker's line arrived within 30 s")
    seen.irc = irc.texts()
    seen.mark("IRC lines seen")
    seen.prometheus = await _prometheus(prometheus, seen)
    seen.delivered_finals = await _delivered_finals(http, dep.ports["captioner"])
    seen.mark("Prometheus answered")


async def _read_transcript(http: aiohttp.ClientSession, base: str, seen: Observed) -> None:
    """The room's transcript list → its persistent identifier → the page and exports."""
    status, listing = await api(http, "GET", f"{base}/r/{SLUG}/transcripts")
    pids = re.findall(r'href="/pid/([^".]+)"', listing) if status == 200 else []
    if not pids:
        seen.errors.append(f"/r/{SLUG}/transcripts ({status}) lists none: {listing[:300]}")
        return
    seen.pid = pids[0]
    for ext, attr in (("", "transcript_html"), (".txt", "transcript_txt"),
                      (".vtt", "transcript_vtt")):  # fmt: skip
        status, body = await api(http, "GET", f"{base}/pid/{seen.pid}{ext}")
        if status != 200:
            seen.errors.append(f"/pid/{seen.pid}{ext}: HTTP {status}")
        setattr(seen, attr, body if status == 200 else "")


async def _delivered_finals(http: aiohttp.ClientSession, port: int) -> float | None:
    status, text = await api(http, "GET", f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return None
    match = re.search(r'^plenary_captioner_delivered_total\{kind="final"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else None


async def _prometheus(prometheus: Prometheus, seen: Observed) -> dict[str, list[dict[str, Any]]]:
    """Caption and videobridge figures as Prometheus scraped them (bounded wait)."""
    queries = {
        "captions": 'plenary_caption_events_total{job="plenary-orchestrator"} > 0',
        "finals": 'plenary_captioner_delivered_total{job="plenary-captioner",kind="final"} > 0',
        "bridge_native": 'jitsi_jvb_bytes_received_total{job="jitsi-videobridge"}',
        "bridge_polled": 'plenary_jvb_received_bytes_total{job="plenary-orchestrator"}',
        "up": "up",
    }
    answers: dict[str, list[dict[str, Any]]] = {}

    async def probe() -> bool:
        for key, expr in queries.items():
            answers[key] = await prometheus.query(expr)
        return all(answers[k] for k in ("captions", "finals", "bridge_native", "bridge_polled"))

    try:
        await eventually(probe, 90, "Prometheus to scrape caption and bridge metrics", every=2)
    except AssertionError as exc:
        seen.errors.append(f"{exc}; prometheus log: {prometheus.log_tail()}")
    return answers


@pytest.fixture(scope="module")
def event(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Observed:
    speech = _speech()
    tmp = tmp_path_factory.mktemp("event")
    tmp.chmod(0o755)
    seen = asyncio.run(run_event(deployment, speech, tmp))
    print(f"event timeline (s): {seen.marks}; recorded problems: {seen.errors}")
    print(f"IRC saw {len(seen.irc)} lines for {len(seen.stored)} stored finals")
    return seen


# --- what every reader saw ---


def _names(seen: Observed) -> dict[str, str]:
    return {uid: t["context"]["user"]["name"] for uid, t in seen.tokens.items()}


def test_join_tokens_carry_the_directory_names(event: Observed) -> None:
    for uid, claims in event.tokens.items():
        assert claims["room"] == SLUG
        assert claims["context"]["user"]["name"] == NAMES[uid]


def test_bridge_streams_to_the_rendered_jicofo_url_with_the_captioner_token(
    event: Observed, deployment: Deployment
) -> None:
    template = event.url_template
    assert template.startswith(f"ws://127.0.0.1:{deployment.ports['captioner']}/transcribe?")
    assert "sessionId={{MEETING_ID}}" in template and "sendBack=true" in template
    token = deployment.secrets["captioner_access_token"]
    assert token in template, f"no captioner token in {template}"
    assert event.bridge is not None and event.bridge.pongs(), "the captioner answered no ping"


def test_captions_are_stored_under_the_room_with_display_names(event: Observed) -> None:
    assert event.bridge is not None and event.script is not None
    finals = event.bridge.finals()
    assert len(finals) >= len(event.script.turns) - 1, (finals, event.errors)
    by_endpoint = {m["participant"]["id"] for m in finals}
    assert by_endpoint == set(MEMBERS.values())
    names = _names(event)
    speaker_of = {m["message_id"]: m["participant"]["id"] for m in finals}
    endpoint_name = {MEMBERS[uid]: name for uid, name in names.items()}
    for caption in event.stored:
        assert caption["room"] == SLUG
        expected = endpoint_name[speaker_of[caption["message_id"]]]
        assert caption["speaker"] == expected, caption
    # Real speech, recognized: the whole meeting's character error rate.
    said = " ".join(t.utterance.text for t in event.script.turns)
    heard = " ".join(c["text"] for c in event.stored)
    rate = cer([(said, heard)])
    assert rate < 0.5, f"CER {rate:.2f}: {heard}"


def test_restart_mid_speech_loses_and_duplicates_no_final(event: Observed) -> None:
    assert event.script is not None and event.bridge is not None
    assert event.killed_at is not None, event.errors
    assert event.restarted_at is not None, event.errors
    assert event.restarted_at < event.script.duration - 2, "speech was over when it came back"
    assert event.finals_while_down, "no final was produced while the orchestrator was down"
    produced = Counter(m["message_id"] for m in event.bridge.finals())
    stored = Counter(c["message_id"] for c in event.stored)
    assert all(n == 1 for n in produced.values()), produced
    duplicated = {k: n for k, n in stored.items() if n > 1}
    assert not duplicated, f"stored more than once: {duplicated}"
    lost = set(produced) - set(stored)
    assert not lost, f"{len(lost)} of {len(produced)} finals never stored: {event.errors}"
    assert len(event.stored) == len(produced)
    # The captioner's own count agrees: every final delivered once (retries are not counted).
    assert event.delivered_finals == len(produced), event.delivered_finals


def test_captions_page_in_chromium_shows_names(event: Observed) -> None:
    for name in _names(event).values():
        assert name in event.page_live, (event.page_live, event.errors)
        assert name in event.page_reloaded, event.page_reloaded
    for caption in event.stored:
        assert caption["text"] in event.page_reloaded


def test_transcript_under_its_persistent_identifier(event: Observed) -> None:
    assert event.pid, event.errors
    for name in _names(event).values():
        assert name in event.transcript_html
        assert name in event.transcript_txt
        assert name in event.transcript_vtt
    assert event.transcript_vtt.startswith("WEBVTT")
    for caption in event.stored:
        assert caption["text"] in event.transcript_txt


def test_transcript_cues_last_as_long_as_their_speech(event: Observed) -> None:
    """A WebVTT cue that ends where it starts is never shown by a player."""
    cues = re.findall(r"^(\S+) --> (\S+)", event.transcript_vtt, re.M)
    assert len(cues) == len(event.stored), (cues, event.errors)

    def seconds(stamp: str) -> float:  # [hh:]mm:ss.ttt
        total = 0.0
        for part in stamp.split(":"):
            total = total * 60 + float(part)
        return total

    empty = [(a, b) for a, b in cues if seconds(b) <= seconds(a)]
    assert not empty, f"cues without duration: {empty}\n{event.transcript_vtt}"


def test_irc_channel_shows_names(event: Observed) -> None:
    """An independent client in the converged ngircd's channel sees the relay's lines."""
    for name in _names(event).values():
        nick = name.replace(" ", "_")
        assert any(line.startswith(f"<{nick}> ") for line in event.irc), (event.irc, event.errors)
    # The relay restarted with the orchestrator: it must not post a caption twice. (It
    # resumes at the newest stored caption, so one delivered from the captioner's backlog
    # before it asked may be missing in IRC; the store above has them all.)
    repeated = [line for line, n in Counter(event.irc).items() if n > 1]
    assert not repeated, repeated


def test_restricted_rooms_irc_channel_is_keyed(event: Observed) -> None:
    """The room admits only an LDAP group, so the relay keys its channel (docs/irc.md)."""
    assert event.irc_channel == "protected", (event.irc_channel, event.errors)


def test_prometheus_answers_caption_and_bridge_queries(event: Observed) -> None:
    """Prometheus scrapes per the rendered config: Plenary's units and the bridge natively."""
    answers = event.prometheus
    for key in ("captions", "finals", "bridge_native", "bridge_polled"):
        assert answers.get(key), (key, answers, event.errors)
    assert float(answers["captions"][0]["value"][1]) > 0
    assert float(answers["finals"][0]["value"][1]) > 0  # the captioner delivered finals
    stats = load_fixture(CURRENT)
    for key in ("bridge_native", "bridge_polled"):
        assert float(answers[key][0]["value"][1]) == stats["total_bytes_received"], answers[key]
    up = {r["metric"]["job"]: r["value"][1] for r in answers["up"]}
    for job in ("plenary-orchestrator", "plenary-captioner", "jitsi-videobridge"):
        assert up.get(job) == "1", up
