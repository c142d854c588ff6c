"""Applications: Flame's three default applications and its registration rules.

The metadata of ``flmexec``, ``flmping`` and ``flmrun`` is Flame v0.6.0's own
(``common/src/lib.rs`` ``default_applications``): flamepy's Runner copies ``flmrun`` into every
Runner application, and Flame's e2e suite checks it field by field.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from flamepy.proto import types_pb2

from flame_local.errors import already_exists, invalid

DEFAULT_MAX_INSTANCES = 1_000_000
DEFAULT_DELAY_RELEASE = 60  # seconds

_SCRIPT_INPUT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "language": {"type": "string", "description": "The language of the script, e.g. python"},
        "code": {
            "type": "string",
            "description": "The code of the script to run, e.g. print('Hello, world!')",
        },
        "input": {
            "type": "array",
            "items": {
                "type": "integer",
                "description": "The input to the script in bytes, e.g. [0x1, 0x2]",
            },
        },
    },
    "required": ["language", "code"],
}
_SCRIPT_OUTPUT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "string",
    "description": "The output of the script in UTF-8.",
}


@dataclass
class Application:
    """A registered application: its spec (proto, defaults filled in) and status."""

    name: str
    spec: types_pb2.ApplicationSpec
    creation_time_ms: int = field(default_factory=lambda: int(time.time()) * 1000)
    generation: int = 0  # bumped on every (re-)registration: installs are never reused across them

    def to_proto(self) -> types_pb2.Application:
        return types_pb2.Application(
            metadata=types_pb2.Metadata(id=self.name, name=self.name),
            spec=self.spec,
            status=types_pb2.ApplicationStatus(
                state=types_pb2.ApplicationState.Enabled, creation_time=self.creation_time_ms
            ),
        )

    @property
    def environments(self) -> dict[str, str]:
        return {e.name: e.value for e in self.spec.environments}


def validate_name(name: str) -> None:
    """Flame's ``validate_application_name`` (``common/src/apis/types.rs``)."""
    if not name:
        raise invalid("application name cannot be empty")
    if len(name) > 253:
        raise invalid("application name exceeds maximum length of 253 characters")
    if ".." in name or "/" in name or "\\" in name:
        raise invalid(f"application name contains invalid characters (path traversal): {name}")
    if name.startswith((".", "-")):
        raise invalid(f"application name cannot start with '.' or '-': {name}")
    if not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name):
        raise invalid(
            f"application name contains invalid characters (only alphanumeric, '-', '_', '.' allowed): {name}"
        )


def _validate_schema(kind: str, text: str) -> None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise invalid(f"invalid {kind} schema: {e}") from None
    if not isinstance(value, (dict, bool)):
        raise invalid(f"invalid {kind} schema: a JSON Schema must be an object or a boolean")


def validate_spec(spec: types_pb2.ApplicationSpec) -> None:
    """The checks Flame's frontend makes before storing an application (INVALID_ARGUMENT)."""
    if spec.HasField("schema"):
        for kind, attr in (("input", "input"), ("output", "output"), ("common data", "common_data")):
            if spec.schema.HasField(attr):
                _validate_schema(kind, getattr(spec.schema, attr))
    if spec.HasField("working_directory") and spec.working_directory:
        if not os.path.isabs(spec.working_directory):
            raise invalid(f"working_directory must be an absolute path, got: {spec.working_directory}")


def normalize(spec: types_pb2.ApplicationSpec) -> types_pb2.ApplicationSpec:
    """Return a copy with Flame's stored defaults (max_instances, delay_release) filled in."""
    out = types_pb2.ApplicationSpec()
    out.CopyFrom(spec)
    if not out.HasField("max_instances"):
        out.max_instances = DEFAULT_MAX_INSTANCES
    if not out.HasField("delay_release"):
        out.delay_release = DEFAULT_DELAY_RELEASE
    if not out.HasField("schema"):
        out.schema.SetInParent()
    return out


def default_applications() -> dict[str, types_pb2.ApplicationSpec]:
    """Flame v0.6.0's default applications, exactly as its session manager registers them."""
    flmexec = types_pb2.ApplicationSpec(
        description="The Flame Executor application, which is used to run scripts.",
        command="${FLAME_HOME}/bin/flmexec-service",
        schema=types_pb2.ApplicationSchema(
            input=json.dumps(_SCRIPT_INPUT_SCHEMA, separators=(",", ":")),
            output=json.dumps(_SCRIPT_OUTPUT_SCHEMA, separators=(",", ":")),
        ),
    )
    flmping = types_pb2.ApplicationSpec(
        url="file://${FLAME_HOME}/bin/flmping-service",
        command="${FLAME_HOME}/bin/flmping-service",
    )
    flmrun = types_pb2.ApplicationSpec(
        description="The Flame Runner application for executing customized Python applications.",
        command="${FLAME_HOME}/bin/uv",
        arguments=[
            "run",
            "--python",
            "python${FLAME_PYTHON_VERSION}",
            "python",
            "-m",
            "flamepy.runner.runpy",
        ],
        installer="python",
    )
    return {
        name: normalize(spec)
        for name, spec in (("flmexec", flmexec), ("flmping", flmping), ("flmrun", flmrun))
    }


def duplicate(name: str) -> Exception:
    return already_exists(f"Application '{name}' already exists")
