"""A STAND-IN for a Consul agent, for tests and local runs without Consul (whose agent cannot be installed
everywhere): NOT Consul. It serves, over real HTTP on 127.0.0.1, exactly the
endpoints Dark Tower uses (see `darktower.control.consul_discovery`), with Consul's request and response
shapes as documented at developer.hashicorp.com/consul/api-docs, so py-consul talks to it unchanged:

- `PUT /v1/agent/service/register` (JSON; keys case-insensitive, as Consul decodes them; one TTL check in
  `checks`), `PUT /v1/agent/service/deregister/<id>`, `PUT /v1/agent/check/pass/<id>[?note=]`,
  `PUT /v1/agent/check/fail/<id>[?note=]`;
- `GET /v1/health/service/<service>` with `X-Consul-Index`: each instance with its node, service (ID,
  Service, Address, Port, Tags, Meta) and checks (the node's `serfHealth` and the service's TTL check);
- `GET /v1/kv/<key>` (404 when absent; Value base64), `PUT /v1/kv/<key>[?acquire=<session>|?release=<session>]`
  answering `true`/`false`;
- `PUT /v1/session/create` (name, ttl, behavior, lockdelay), `PUT /v1/session/renew/<id>` (404 once the
  session is gone), `PUT /v1/session/destroy/<id>`.

What it models: TTL checks start critical, pass for TTL seconds, then turn critical; a service whose check
stays critical past DeregisterCriticalServiceAfter is removed; a session not renewed within its TTL is
invalidated, releasing (or, with behavior "delete", deleting) its locks, and the lock delay keeps them from
being acquired again for `lockdelay` (15 s by default). Time is the stand-in's own clock (`advance`), so
tests move it instead of sleeping. Anything else answers 404; errors answer with Consul's plain-text bodies.
`fail` makes every request answer 500 (an agent that is up but broken); `close` stops the server (down).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_DURATION = re.compile(r"([\d.]+)(ns|us|ms|s|m|h)")
_POLL_S = 0.02
"""How often the server loop looks for `close()` (http.server's default, 0.5 s, would slow every test)."""
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_s(text: str) -> float:
    """A Go duration ("10s", "1m30s") in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def lower_keys(data: dict[str, Any]) -> dict[str, Any]:
    return {key.lower(): value for key, value in data.items()}


@dataclass
class _Check:
    check_id: str
    name: str
    service_id: str
    ttl_s: float
    deregister_after_s: float | None
    status: str = "critical"
    output: str = ""
    passing_until: float = 0.0
    critical_since: float = 0.0


@dataclass
class _Session:
    session_id: str
    name: str
    ttl_s: float | None
    behavior: str
    lock_delay_s: float
    expires_at: float | None


@dataclass
class _Entry:
    value: bytes
    create_index: int
    modify_index: int
    lock_index: int = 0
    session: str | None = None


@dataclass
class StandInState:
    now: float = 1000.0
    index: int = 1
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, _Check] = field(default_factory=dict)
    kv: dict[str, _Entry] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)
    lock_delays: dict[str, float] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    """Every service registration's payload, keys lower-cased."""
    failing: bool = False


class ConsulStandIn:
    """The stand-in on a free port of 127.0.0.1 from construction until `close()`."""

    def __init__(self) -> None:
        self.state = StandInState()
        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_S,), name="consul-standin", daemon=True
        )
        self._thread.start()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.state.now += seconds
            self._expire()

    def fail(self, failing: bool = True) -> None:
        with self._lock:
            self.state.failing = failing

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def wait_for_requests(self, path: str, count: int, timeout_s: float) -> bool:
        """Waits until `count` more requests for `path` have arrived (from now); False on timeout."""
        with self._answered:
            target = self._answered_count(path) + count
            return self._answered.wait_for(lambda: self._answered_count(path) >= target, timeout_s)

    def _answered_count(self, path: str) -> int:
        return sum(1 for _method, seen in self.state.requests if seen == path)

    def check_status(self, check_id: str) -> str | None:
        with self._lock:
            self._expire()
            check = self.state.checks.get(check_id)
            return None if check is None else check.status

    # --- the model ---------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        """(status, body, whether the body is JSON) for one request."""
        with self._lock:
            self.state.requests.append((method, path))
            self._answered.notify_all()
            if self.state.failing:
                return 500, "Unexpected response code: 500 (stand-in told to fail)", False
            self._expire()
            return self._route(method, path, query, body)

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        routes: list[tuple[str, str, Any]] = [
            ("PUT", "/v1/agent/service/register", lambda _m: self._register(body)),
            ("PUT", "/v1/agent/service/deregister/(.+)", lambda m: self._deregister(m[1])),
            ("PUT", "/v1/agent/check/pass/(.+)", lambda m: self._pass(m[1], query.get("note", ""))),
            ("PUT", "/v1/agent/check/fail/(.+)", lambda m: self._fail(m[1], query.get("note", ""))),
            ("GET", "/v1/health/service/(.+)", lambda m: self._health(m[1])),
            ("GET", "/v1/kv/(.+)", lambda m: self._kv_get(m[1])),
            ("PUT", "/v1/kv/(.+)", lambda m: self._kv_put(m[1], query, body)),
            ("PUT", "/v1/session/create", lambda _m: self._session_create(body)),
            ("PUT", "/v1/session/renew/(.+)", lambda m: self._session_renew(m[1])),
            ("PUT", "/v1/session/destroy/(.+)", lambda m: self._session_destroy(m[1])),
        ]
        for route_method, pattern, action in routes:
            match = re.fullmatch(pattern, path)
            if match is not None and method == route_method:
                result: tuple[int, Any, bool] = action(match)
                return result
        return 404, f"stand-in: no endpoint {method} {path}", False

    def _bump(self) -> int:
        self.state.index += 1
        return self.state.index

    def _register(self, body: bytes) -> tuple[int, Any, bool]:
        try:
            payload = lower_keys(json.loads(body))
            name = payload["name"]
            service_id = payload.get("id") or name
            checks = [lower_keys(check) for check in payload.get("checks") or []]
            parsed = []
            for check in checks:
                after = check.get("deregistercriticalserviceafter")
                parsed.append(
                    _Check(
                        check_id=check.get("checkid") or f"service:{service_id}",
                        name=check.get("name") or f"Service '{name}' check",
                        service_id=service_id,
                        ttl_s=duration_s(check["ttl"]),
                        deregister_after_s=duration_s(after) if after else None,
                        critical_since=self.state.now,
                    )
                )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return 400, f"Request decode failed: {exc}", False
        self.state.registrations.append(payload)
        for check_id in [c for c, check in self.state.checks.items() if check.service_id == service_id]:
            del self.state.checks[check_id]
        self.state.services[service_id] = {
            "ID": service_id,
            "Service": name,
            "Address": payload.get("address", ""),
            "Port": int(payload.get("port", 0)),
            "Tags": list(payload.get("tags") or []),
            "Meta": dict(payload.get("meta") or {}),
        }
        for ttl_check in parsed:
            self.state.checks[ttl_check.check_id] = ttl_check
        self._bump()
        return 200, "", False

    def _deregister(self, service_id: str) -> tuple[int, Any, bool]:
        if service_id not in self.state.services:
            return (
                404,
                f'Unknown service ID "{service_id}". Ensure that the service ID is passed, not the service name.',
                False,
            )
        self._remove_service(service_id)
        return 200, "", False

    def _remove_service(self, service_id: str) -> None:
        del self.state.services[service_id]
        for check_id in [c for c, check in self.state.checks.items() if check.service_id == service_id]:
            del self.state.checks[check_id]
        self._bump()

    def _pass(self, check_id: str, note: str) -> tuple[int, Any, bool]:
        check = self.state.checks.get(check_id)
        if check is None:
            return (
                404,
                f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.',
                False,
            )
        check.status = "passing"
        check.output = note
        check.passing_until = self.state.now + check.ttl_s
        self._bump()
        return 200, "", False

    def _fail(self, check_id: str, note: str) -> tuple[int, Any, bool]:
        check = self.state.checks.get(check_id)
        if check is None:
            return (
                404,
                f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.',
                False,
            )
        if check.status != "critical":
            check.critical_since = self.state.now
        check.status = "critical"
        check.output = note
        check.passing_until = self.state.now
        self._bump()
        return 200, "", False

    def _health(self, name: str) -> tuple[int, Any, bool]:
        entries = []
        for service in self.state.services.values():
            if service["Service"] != name:
                continue
            checks = [
                {
                    "Node": "standin",
                    "CheckID": "serfHealth",
                    "Name": "Serf Health Status",
                    "Status": "passing",
                    "ServiceID": "",
                    "ServiceName": "",
                    "Output": "Agent alive and reachable",
                }
            ]
            checks += [
                {
                    "Node": "standin",
                    "CheckID": c.check_id,
                    "Name": c.name,
                    "Status": c.status,
                    "ServiceID": c.service_id,
                    "ServiceName": name,
                    "Output": c.output,
                }
                for c in self.state.checks.values()
                if c.service_id == service["ID"]
            ]
            entries.append(
                {
                    "Node": {"Node": "standin", "Address": "127.0.0.1", "Datacenter": "dc1"},
                    "Service": dict(service),
                    "Checks": checks,
                }
            )
        return 200, entries, True

    def _kv_get(self, key: str) -> tuple[int, Any, bool]:
        entry = self.state.kv.get(key)
        if entry is None:
            return 404, "", False
        item: dict[str, Any] = {
            "Key": key,
            "Value": base64.b64encode(entry.value).decode() if entry.value else None,
            "Flags": 0,
            "CreateIndex": entry.create_index,
            "ModifyIndex": entry.modify_index,
            "LockIndex": entry.lock_index,
        }
        if entry.session is not None:
            item["Session"] = entry.session
        return 200, [item], True

    def _kv_put(self, key: str, query: dict[str, str], body: bytes) -> tuple[int, Any, bool]:
        index = self._bump()
        if "acquire" in query:
            return self._kv_acquire(key, query["acquire"], body, index)
        entry = self.state.kv.get(key)
        if "release" in query:
            if entry is None or entry.session != query["release"]:
                return 200, False, True
            entry.session = None
        elif entry is None:
            self.state.kv[key] = _Entry(body, index, index)
            return 200, True, True
        entry.value = body
        entry.modify_index = index
        return 200, True, True

    def _kv_acquire(self, key: str, session: str, body: bytes, index: int) -> tuple[int, Any, bool]:
        if session not in self.state.sessions:
            return 500, f'invalid session "{session}"', False
        entry = self.state.kv.get(key)
        held_by = None if entry is None else entry.session
        if held_by not in {None, session}:
            return 200, False, True
        if held_by is None and self.state.lock_delays.get(key, 0.0) > self.state.now:
            return 200, False, True
        if entry is None:
            entry = self.state.kv[key] = _Entry(body, index, index)
        if entry.session != session:
            entry.lock_index += 1
        entry.session = session
        entry.value = body
        entry.modify_index = index
        return 200, True, True

    def _session_create(self, body: bytes) -> tuple[int, Any, bool]:
        try:
            payload = lower_keys(json.loads(body)) if body else {}
            ttl = duration_s(payload["ttl"]) if payload.get("ttl") else None
            lock_delay = duration_s(payload["lockdelay"]) if payload.get("lockdelay") else 15.0
            behavior = payload.get("behavior", "release")
        except (ValueError, TypeError, AttributeError) as exc:
            return 400, f"Request decode failed: {exc}", False
        if ttl is not None and not 10 <= ttl <= 86400:
            return 400, f"Invalid Session TTL '{ttl}', must be between [10s=24h0m0s]", False
        if behavior not in {"release", "delete"}:
            return 400, f"Invalid Behavior setting '{behavior}'", False
        session_id = str(uuid.uuid4())
        expires = None if ttl is None else self.state.now + ttl
        self.state.sessions[session_id] = _Session(
            session_id, payload.get("name", ""), ttl, behavior, lock_delay, expires
        )
        self._bump()
        return 200, {"ID": session_id}, True

    def _session_renew(self, session_id: str) -> tuple[int, Any, bool]:
        session = self.state.sessions.get(session_id)
        if session is None:
            return 404, f"Session id '{session_id}' not found", False
        if session.ttl_s is not None:
            session.expires_at = self.state.now + session.ttl_s
        return 200, [self._session_view(session)], True

    def _session_destroy(self, session_id: str) -> tuple[int, Any, bool]:
        if session_id in self.state.sessions:
            self._invalidate(session_id)
        return 200, True, True

    def _session_view(self, session: _Session) -> dict[str, Any]:
        return {
            "ID": session.session_id,
            "Name": session.name,
            "Behavior": session.behavior,
            "TTL": f"{session.ttl_s:g}s" if session.ttl_s else "",
            "LockDelay": int(session.lock_delay_s * 1e9),
        }

    def _invalidate(self, session_id: str) -> None:
        session = self.state.sessions.pop(session_id)
        for key, entry in list(self.state.kv.items()):
            if entry.session != session_id:
                continue
            self.state.lock_delays[key] = self.state.now + session.lock_delay_s
            if session.behavior == "delete":
                del self.state.kv[key]
            else:
                entry.session = None
        self._bump()

    def _expire(self) -> None:
        now = self.state.now
        for check in list(self.state.checks.values()):
            if check.status == "passing" and now >= check.passing_until:
                check.status = "critical"
                check.output = "TTL expired"
                check.critical_since = check.passing_until
            if (
                check.status == "critical"
                and check.deregister_after_s is not None
                and now - check.critical_since >= check.deregister_after_s
                and check.service_id in self.state.services
            ):
                self._remove_service(check.service_id)
        for session in list(self.state.sessions.values()):
            if session.expires_at is not None and now >= session.expires_at:
                self._invalidate(session.session_id)


class _Handler(BaseHTTPRequestHandler):
    standin: ConsulStandIn

    def do_GET(self) -> None:
        self._answer("GET")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def log_message(self, *_args: Any) -> None:
        return

    def _answer(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload, is_json = self.standin.handle(method, unquote(parts.path), query, body)
        data = json.dumps(payload).encode() if is_json else str(payload).encode()
        self.send_response(HTTPStatus(status))
        self.send_header("Content-Type", "application/json" if is_json else "text/plain; charset=utf-8")
        self.send_header("X-Consul-Index", str(self.standin.state.index))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
