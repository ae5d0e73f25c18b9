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
from typing import Any, Dict, Text

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


def _validate_action_result(self, result: Dict[Text, Any]) -> bool:
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


_event_types: Dict[Text, Any] = {}


def _make_resolve_by_type(original):
    """`Event.resolve_by_type` walks every Event subclass for every event it deserialises
    (each tracker load and each action response: ~8% of a turn). Same answer from a dict
    filled on first use; a miss asks the original (types defined later, errors)."""

    def resolve_by_type(type_name: Text, default=None):
        if not _event_types:
            from rasa.shared.core.events import Event
            from rasa.shared.utils.common import all_subclasses

            for cls in all_subclasses(Event):
                _event_types.setdefault(cls.type_name, cls)  # first match wins, as in the original
        cls = _event_types.get(type_name)
        return cls if cls is not None else original(type_name, default)

    setattr(resolve_by_type, _INSTALLED_FLAG, True)
    return resolve_by_type


def install() -> None:
    """Idempotent; called when our NLU components are imported (every model load)."""
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.core.events import Event

    if not getattr(RemoteAction._validate_action_result, _INSTALLED_FLAG, False):
        setattr(_validate_action_result, _INSTALLED_FLAG, True)
        RemoteAction._validate_action_result = _validate_action_result
    if not getattr(Event.resolve_by_type, _INSTALLED_FLAG, False):
        Event.resolve_by_type = staticmethod(_make_resolve_by_type(Event.resolve_by_type))
