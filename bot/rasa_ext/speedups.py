"""Speed fixes for Rasa 3.6 internals, installed in every process that loads our model.

Rasa checks each action-server response with `jsonschema.validate(result, schema)`, which
re-validates Rasa's large event schema against the JSON-Schema meta-schema on every call:
~30 ms of CPU per custom action on this machine, two or three times a turn. We validate
against the same schema with one validator built once (~1 ms); an invalid response still
raises the same `ValidationError` with Rasa's message.

The event schema is a `oneOf` over ~23 event types told apart by the constant "event" field,
so jsonschema tries every branch for every event (~1.5 ms a response). Since the constants
are distinct, a response is valid exactly when it passes the schema without the `oneOf` and
each event passes the one branch of its type: we check that first and fall back to the full
validator only to produce Rasa's own error message.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

_INSTALLED_FLAG = "_qc_cached_validator"


@lru_cache(maxsize=1)
def action_response_validator():
    from jsonschema import validators
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    cls = validators.validator_for(schema)
    cls.check_schema(schema)  # what jsonschema.validate does on every call, done once
    return cls(schema)


@lru_cache(maxsize=1)
def _split_validators():
    """(the response schema without the per-event `oneOf`, {event type: its branch})."""
    full = action_response_validator()
    schema = full.schema
    events = schema["properties"]["events"]
    items = events["items"]
    shell = {**schema, "properties": {**schema["properties"],
                                      "events": {**events, "items": {k: v for k, v in items.items() if k != "oneOf"}}}}
    branches = {}
    for branch in items["oneOf"]:
        const = branch["properties"]["event"]["const"]
        assert const not in branches, f"event type {const!r} twice in Rasa's schema"
        branches[const] = type(full)(branch)
    return type(full)(shell), branches


def response_is_valid(result: Any) -> bool:
    """Same verdict as validating against Rasa's full schema, without trying every branch."""
    shell, branches = _split_validators()
    if not shell.is_valid(result):
        return False
    for event in result.get("events") or []:
        branch = branches.get(event["event"])
        if branch is None or not branch.is_valid(event):
            return False
    return True


def _validate_action_result(self, result: dict[str, Any]) -> bool:
    from jsonschema import ValidationError, exceptions
    from rasa.shared.constants import DOCS_BASE_URL

    if response_is_valid(result):
        return True
    error = exceptions.best_match(action_response_validator().iter_errors(result))
    if error is None:  # cannot happen while response_is_valid agrees with the full schema
        return True
    assert isinstance(error, ValidationError)
    error.message += (
        ". Failed to validate Action server response from API, make sure your response from the Action "
        f"endpoint is valid. For more information about the format visit {DOCS_BASE_URL}/custom-actions"
    )
    raise error


_event_types: dict[str, Any] = {}


def _make_resolve_by_type(original):
    """`Event.resolve_by_type` walks every Event subclass for every event it deserialises
    (each tracker load and each action response: ~8% of a turn). Same answer from a dict
    filled on first use; a miss asks the original (types defined later, errors)."""

    def resolve_by_type(type_name: str, default=None):
        if not _event_types:
            from rasa.shared.core.events import Event
            from rasa.shared.utils.common import all_subclasses

            for cls in all_subclasses(Event):
                _event_types.setdefault(cls.type_name, cls)  # first match wins, as in the original
        cls = _event_types.get(type_name)
        return cls if cls is not None else original(type_name, default)

    setattr(resolve_by_type, _INSTALLED_FLAG, True)
    return resolve_by_type


# Sanic (the action server) closes an idle keep-alive connection after 5 s: ours are
# dropped after 2, so a request is never written into a connection the server is closing.
POOLED_KEEPALIVE_SECONDS = 2.0


def _make_pooled_request(original):
    """`EndpointConfig.request` opens a new aiohttp ClientSession — a new connector, a new
    TCP connection — for every call: ~9 % of the Rasa server's CPU under load, most of it
    for the two or three action-server calls of each turn. Same request, same errors, on
    one session per endpoint and event loop that keeps its connections alive."""
    import aiohttp

    async def request(self, method: str = "post", subpath: str | None = None,
                      content_type: str | None = "application/json", compress: bool = False, **kwargs: Any):
        if self.cafile:  # TLS with a private CA: left to the original
            return await original(self, method, subpath, content_type, compress, **kwargs)
        from aiohttp import ContentTypeError
        from rasa.core.constants import DEFAULT_REQUEST_TIMEOUT
        from rasa.utils.endpoints import ClientResponseError, concat_url

        headers = {}
        if content_type:
            headers["Content-Type"] = content_type
        if "headers" in kwargs:
            headers.update(kwargs.pop("headers"))
        if self.headers:
            headers.update(self.headers)
        auth = aiohttp.BasicAuth(self.basic_auth["username"], self.basic_auth["password"]) if self.basic_auth else None
        kwargs.setdefault("timeout", aiohttp.ClientTimeout(total=DEFAULT_REQUEST_TIMEOUT))
        session = _pooled_session(self)
        async with session.request(method, concat_url(self.url, subpath), headers=headers, auth=auth,
                                   params=self.combine_parameters(kwargs), compress=compress, **kwargs) as response:
            if response.status >= 400:
                raise ClientResponseError(response.status, response.reason, await response.content.read())
            try:
                return await response.json()
            except ContentTypeError:
                return None

    setattr(request, _INSTALLED_FLAG, True)
    return request


def _pooled_session(endpoint):
    import asyncio

    import aiohttp

    loop = asyncio.get_running_loop()
    held = getattr(endpoint, "_qc_session", None)
    if held is not None and held[0] is loop and not held[1].closed:
        return held[1]
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=POOLED_KEEPALIVE_SECONDS, limit=0))
    endpoint._qc_session = (loop, session)
    return session


def install() -> None:
    """Idempotent; called when our NLU components are imported (every model load)."""
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.core.events import Event

    if not getattr(RemoteAction._validate_action_result, _INSTALLED_FLAG, False):
        setattr(_validate_action_result, _INSTALLED_FLAG, True)
        RemoteAction._validate_action_result = _validate_action_result
    if not getattr(Event.resolve_by_type, _INSTALLED_FLAG, False):
        Event.resolve_by_type = staticmethod(_make_resolve_by_type(Event.resolve_by_type))
    from rasa.utils.endpoints import EndpointConfig

    if not getattr(EndpointConfig.request, _INSTALLED_FLAG, False):
        EndpointConfig.request = _make_pooled_request(EndpointConfig.request)
