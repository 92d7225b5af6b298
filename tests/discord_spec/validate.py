"""Validate payloads against Discord's OpenAPI description (``openapi.json`` beside this file).

- :func:`schema_errors` checks an instance against a JSON schema that may point into the spec
  (``{"$ref": SPEC + "#/components/schemas/MessageResponse"}``, see :func:`ref`), with
  ``jsonschema``'s 2020-12 validator (OpenAPI 3.1's dialect) and format checks for the spec's
  formats (snowflake, int32/int64, date-time, uri). The spec leaves objects open, so a payload
  could carry invented or misspelt fields unnoticed: after validating, every key of every object
  must also be one that the matching schema names (the branch that matched, for ``oneOf``).
- :func:`response_errors` finds the operation of a REST request in the spec's ``paths`` and
  checks the response against it: a status the operation lists, the headers it lists, the body
  against the schema of that status (``4XX`` for errors, ``429`` for rate limits).
- :func:`request_errors` checks a request's JSON body against the operation's request body.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_FILE = Path(__file__).with_name("openapi.json")
SPEC = "urn:discord-openapi"


@functools.cache
def spec() -> dict[str, Any]:
    """The description, with :func:`_correct` applied."""
    document = json.loads(SPEC_FILE.read_text())
    _correct(document["components"]["schemas"])
    return document


def _correct(schemas: dict[str, Any]) -> None:
    """Where the description contradicts Discord's documentation, the documentation wins; each
    correction names its page and section (and is listed in README.md):

    - ``MessageReferenceType`` lists only DEFAULT (0); message.mdx, "Message Reference Types",
      documents FORWARD (1), which forwards carry.
    - ``InnerErrors`` items are ``Error``, whose ``code`` is an integer; reference.mdx, "Error
      Messages", shows the field errors of a 50035 with string codes (``BASE_TYPE_REQUIRED``).
    """
    schemas["MessageReferenceType"]["oneOf"].append(
        {"title": "FORWARD", "description": "Reference to a forwarded message", "const": 1}
    )
    field_error = {
        "type": "object",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        "required": ["code", "message"],
        "additionalProperties": False,
    }
    schemas["InnerErrors"]["properties"]["_errors"]["items"] = field_error


def ref(name: str) -> dict[str, str]:
    """A schema that is the spec's component ``name``."""
    return {"$ref": f"{SPEC}#/components/schemas/{name}"}


def component(name: str, *, optional: tuple[str, ...] = (), extra: dict | None = None) -> dict:
    """A copy of the spec's component ``name`` (its references still into the spec), with the
    fields in ``optional`` no longer required and ``extra`` properties added: for the gateway's
    variants of objects (a partial member, a message with ``guild_id``)."""
    schema = _absolute(copy.deepcopy(spec()["components"]["schemas"][name]))
    schema["required"] = [f for f in schema.get("required", []) if f not in optional]
    schema["properties"] = dict(schema.get("properties", {}), **(extra or {}))
    return schema


def _absolute(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (SPEC + v if k == "$ref" and v.startswith("#") else _absolute(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolute(v) for v in node]
    return node


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(SPEC, Resource(contents=spec(), specification=DRAFT202012))


def _formats() -> FormatChecker:
    checker = FormatChecker()

    def ranged(bits: int) -> Any:
        def check(value: object) -> bool:
            return not isinstance(value, int) or -(2 ** (bits - 1)) <= value < 2**bits

        return check

    def date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return parsed.tzinfo is not None

    def uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return bool(parts.scheme and (parts.netloc or parts.scheme in ("attachment", "urn")))

    checker.checks("snowflake")(lambda v: not isinstance(v, str) or v.isdigit())
    checker.checks("int32")(ranged(32))
    checker.checks("int64")(ranged(64))
    checker.checks("date-time")(date_time)
    checker.checks("uri")(uri)
    return checker


_FORMATS = _formats()
_validators: dict[int, Draft202012Validator] = {}


def _validator(schema: dict) -> Draft202012Validator:
    found = _validators.get(id(schema))
    if found is None or found.schema is not schema:
        found = Draft202012Validator(schema, registry=_registry(), format_checker=_FORMATS)
        _validators[id(schema)] = found
    return found


@functools.cache
def _target(pointer: str) -> Any:
    """The spec's node at ``pointer``, its own references made absolute (so that a validator
    built on it alone still resolves them in the spec)."""
    node: Any = spec()
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return _absolute(node)


def _resolve(schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        target = schema["$ref"]
        node = _target(target.split("#", 1)[1] if "#" in target else "")
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {"allOf": [node, rest]} if rest else node
    return schema


def _branches(instance: Any, schema: dict) -> Iterator[dict]:
    """The subschemas that describe ``instance``: all of ``allOf``, the matching ``oneOf`` or
    ``anyOf`` branch, recursively."""
    yield schema
    for sub in schema.get("allOf", []):
        resolved = _resolve(sub)
        if isinstance(resolved, dict):
            yield from _branches(instance, resolved)
    for key in ("oneOf", "anyOf"):
        for sub in schema.get(key, []):
            resolved = _resolve(sub)
            if isinstance(resolved, dict) and _validator(resolved).is_valid(instance):
                yield from _branches(instance, resolved)
                break


def unknown_fields(instance: Any, schema: Any, where: str = "$") -> list[str]:
    """Keys of objects in ``instance`` that no matching schema names."""
    schema = _resolve(schema)
    if not isinstance(schema, dict):
        return []
    found: list[str] = []
    branches = list(_branches(instance, schema))
    if isinstance(instance, dict):
        named: dict[str, Any] = {}
        extra: list[Any] = []
        open_ended = False
        for branch in branches:
            named.update(branch.get("properties", {}))
            more = branch.get("additionalProperties")
            if isinstance(more, dict):
                extra.append(more)
            open_ended |= more is True or branch.get("type") not in (None, "object", ["object"])
        described = bool(named) or bool(extra)
        for key, value in instance.items():
            if key in named:
                found += unknown_fields(value, named[key], f"{where}.{key}")
            elif extra:
                found += unknown_fields(value, extra[0], f"{where}.{key}")
            elif described and not open_ended:
                found.append(f"{where}.{key}: not in the spec's schema")
    elif isinstance(instance, list):
        items = next((b["items"] for b in branches if "items" in b), None)
        if items is not None:
            for i, value in enumerate(instance):
                found += unknown_fields(value, items, f"{where}[{i}]")
    return found


def schema_errors(instance: Any, schema: dict, where: str = "$") -> list[str]:
    """Every way ``instance`` does not match ``schema`` (empty when it does)."""
    errors = [
        f"{where}{''.join(f'[{p!r}]' for p in e.absolute_path)}: {e.message[:300]}"
        for e in _validator(schema).iter_errors(instance)
    ]
    return errors or unknown_fields(instance, schema, where)


# --- REST -----------------------------------------------------------------------------------


@functools.cache
def _routes() -> list[tuple[re.Pattern[str], str]]:
    """Spec paths as patterns, the most literal first (``/users/@me`` before ``/users/{id}``)."""
    paths = sorted(spec()["paths"], key=lambda t: (t.count("{"), -len(t)))
    return [(re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(t)) + "$"), t)
            for t in paths]  # fmt: skip


def operation(method: str, path: str) -> tuple[str, dict] | None:
    for pattern, template in _routes():
        if pattern.match(path):
            op = spec()["paths"][template].get(method.lower())
            if op is not None:
                return template, op
    return None


def _response_spec(op: dict, status: int) -> dict | None:
    responses = op["responses"]
    found = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    return _resolve_response(found) if found else None


def _resolve_response(node: dict) -> dict:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return spec()["components"]["responses"][name]
    return node


def response_errors(
    method: str, path: str, status: int, headers: dict[str, str], body: Any
) -> list[str]:
    """How a REST response differs from what the spec gives for that request."""
    where = f"{method} {path} -> {status}"
    found = operation(method, path)
    if found is None:
        return [f"{where}: no such operation in the spec"]
    template, op = found
    described = _response_spec(op, status)
    if described is None:
        return [f"{where}: status not among {sorted(op['responses'])} for {template}"]
    lower = {k.lower() for k in headers}
    errors = [
        f"{where}: header {name} missing"
        for name in described.get("headers", {})
        if name.lower() not in lower
    ]
    content = described.get("content", {}).get("application/json")
    if content is None:
        if body is not None:
            errors.append(f"{where}: a body where the spec has none")
        return errors
    if body is None:
        return [*errors, f"{where}: no JSON body"]
    schema = _absolute(content["schema"])
    return errors + schema_errors(body, schema, where)


def request_errors(method: str, path: str, body: Any, *, multipart: bool = False) -> list[str]:
    """How a REST request's JSON body (a multipart request's ``payload_json``) differs from
    the operation's request body in the spec; a body where the spec takes none is one."""
    where = f"{method} {path} (request)"
    found = operation(method, path)
    if found is None:
        return [f"{where}: no such operation in the spec"]
    template, op = found
    content = op.get("requestBody", {}).get("content", {})
    if body is None:
        return []
    described = content.get("application/json")
    if described is None:
        return [f"{where}: a JSON body where the spec takes none for {template}"]
    if multipart and "multipart/form-data" not in content:
        return [f"{where}: multipart, which the spec does not take for {template}"]
    schema = _absolute(described["schema"])
    return [
        f"{where}{''.join(f'[{p!r}]' for p in e.absolute_path)}: {e.message[:300]}"
        for e in _validator(schema).iter_errors(_snowflakes_as_sent(body))
    ]


def _snowflakes_as_sent(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: _snowflakes_as_sent(v) for k, v in body.items()}
    if isinstance(body, list):
        return [_snowflakes_as_sent(v) for v in body]
    if isinstance(body, int) and not isinstance(body, bool) and body >= 1 << 32:
        return str(body)
    return body
