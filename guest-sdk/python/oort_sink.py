"""Write Oort sinks in Python.

A sink subclasses `Sink`, names its props with a dataclass `Config`, and exports itself with
`export`. componentize-py builds the module into a component for the `oort:sink` world:

    from dataclasses import dataclass
    import oort_sink as oort

    @dataclass
    class Config:
        prefix: str = ""

    class Echo(oort.Sink):
        Config = Config

        def collect(self, batch):
            for message in batch:
                oort.log.info(self.config.prefix + message.text())

    Sink = oort.export(Echo)

The host calls `configure -> open -> collect* -> close` (see wit/sink.wit: this SDK targets
oort:sink@0.2.0; components built with an older SDK against 0.1.0 still run). Each batch is a
`Batch`: a list of `Message` with the batch's `sequence` number and, for each templated prop,
`batch.dynamic("path")`, its value for each message. Raise `InvalidConfig`,
`Transient` or `Rejected` to tell the host what to do next; any other exception traps the
instance, and the host replaces it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports import mqtt as _mqtt
from wit_world.imports import types

__all__ = [
    "Batch",
    "Context",
    "InvalidConfig",
    "Message",
    "Rejected",
    "Sink",
    "SinkError",
    "Transient",
    "export",
    "log",
    "publish",
]


class SinkError(Exception):
    """Why a call failed; the subclass tells the host what to do next."""


class InvalidConfig(SinkError):
    """The props are wrong: the rule does not start. Name the prop in the message."""


class Transient(SinkError):
    """A passing fault: the host retries the batch with backoff, then caches it."""


class Rejected(SinkError):
    """The target refuses this batch for good: it goes to the dead-letter output."""


@dataclass(frozen=True)
class Context:
    """Who this instance works for."""

    rule_id: str
    action: str
    instance: int
    #: How payloads are encoded: "json" or "delimited".
    format: str
    #: 0 for the action's first instance; higher for a replacement. Reset the target only at 0.
    generation: int


@dataclass(frozen=True)
class Message:
    """One message of a batch: its encoded payload and when it was produced."""

    payload: bytes
    timestamp_ms: int

    def text(self) -> str:
        """The payload as text; a payload that is not UTF-8 is `Rejected`."""
        try:
            return self.payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Rejected(f"payload is not UTF-8: {e}") from None

    def json(self) -> Any:
        """The payload parsed as JSON; a payload that is not JSON is `Rejected`."""
        try:
            return json.loads(self.payload)
        except ValueError as e:
            raise Rejected(f"payload is not JSON: {e}") from None


class Batch(list):
    """The messages of one batch, in order, with what the host tells about the batch."""

    #: The batch's sequence number, per action: it grows from batch to batch, and a batch
    #: delivered again keeps it (see `Sink.open_after`).
    sequence: int = 0

    def __init__(self, messages: list, sequence: int = 0, dynamic: Optional[dict] = None):
        super().__init__(messages)
        self.sequence = sequence
        self._dynamic = dynamic or {}

    def dynamic(self, name: str) -> Optional[list[str]]:
        """The value of templated prop `name` (e.g. `path` holding `{{.device}}.csv`) for each
        message, evaluated by the host; `None` if the prop holds no template."""
        return self._dynamic.get(name)


class Sink:
    """Base class of a sink. Override what you need; `collect` is required.

    `Config` is a dataclass naming the props: unknown props, missing ones and values of the wrong
    type become `InvalidConfig` naming the prop. Leave it `None` to get the props as a dict.
    """

    Config: Optional[type] = None

    def __init__(self, ctx: Context, config: Any) -> None:
        """Checks the config and keeps it. Must not touch the outside world."""
        self.ctx = ctx
        self.config = config

    def open(self) -> None:
        """Connects to the target (opens files). Called once, after configure (by the default
        `open_after`)."""

    def open_after(self, delivered: Optional[int]) -> None:
        """What the host calls after configure: `delivered` is the highest batch sequence the
        host knows was delivered, `None` when the numbering starts afresh (forget any marker
        kept from an earlier run). Batches above `delivered` but not above the sink's own marker
        were written before a crash lost their acknowledgement: skip them. Calls `open`."""
        self.open()

    def collect(self, batch: Batch) -> None:
        """Delivers one batch, in order. Returning means every message is delivered."""
        raise NotImplementedError

    def close(self) -> None:
        """Flushes and releases everything. Called once, at the end or before a hot reload."""


class log:
    """Writes to Oort's log; lines are tagged with the rule, action and instance."""

    trace: Callable[[str], None] = staticmethod(lambda m: host.log(host.Level.TRACE, m))
    debug: Callable[[str], None] = staticmethod(lambda m: host.log(host.Level.DEBUG, m))
    info: Callable[[str], None] = staticmethod(lambda m: host.log(host.Level.INFO, m))
    warn: Callable[[str], None] = staticmethod(lambda m: host.log(host.Level.WARN, m))
    error: Callable[[str], None] = staticmethod(lambda m: host.log(host.Level.ERROR, m))


_QOS = {0: _mqtt.Qos.AT_MOST_ONCE, 1: _mqtt.Qos.AT_LEAST_ONCE, 2: _mqtt.Qos.EXACTLY_ONCE}


def publish(topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
    """Publishes through the host to the broker and topics the action grants."""
    try:
        _mqtt.publish(topic, payload, _QOS[qos], retain)
    except Err as e:
        raise _from_wit(e.value) from None


def config_from(cls: Optional[type], props: dict) -> Any:
    """Builds `cls` (a dataclass) from the props, naming the prop that does not fit."""
    if cls is None:
        return props
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = {_camel(name): name for name in fields}
    values = {}
    for key, value in props.items():
        name = names.get(key, key if key in fields else None)
        if name is None:
            close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.75)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise InvalidConfig(
                f"prop `{key}`: unknown prop, expected one of {sorted(names)}{hint}"
            )
        values[name] = _check(key, hints[name], value)
    for name, f in fields.items():
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in values and missing:
            raise InvalidConfig(f"prop `{_camel(name)}`: missing (it has no default)")
    return cls(**values)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _check(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint) or hint
    if origin is typing.Union:
        allowed = typing.get_args(hint)
        if value is None and type(None) in allowed:
            return None
        origin = next(a for a in allowed if a is not type(None))
        origin = typing.get_origin(origin) or origin
    if origin is Any:
        return value
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is int and isinstance(value, bool) or not isinstance(value, origin):
        raise InvalidConfig(
            f"prop `{key}`: invalid type: {_json_kind(value)} {json.dumps(value)}, "
            f"expected {_EXPECTED.get(origin, origin.__name__)}"
        )
    return value


_EXPECTED = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "an object"}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "null"
    return "object"


def _from_wit(err: types.SinkError) -> SinkError:
    if isinstance(err, types.SinkError_InvalidConfig):
        return InvalidConfig(err.value)
    if isinstance(err, types.SinkError_Transient):
        return Transient(err.value)
    return Rejected(err.value)


def _to_wit(err: SinkError) -> Err:
    if isinstance(err, InvalidConfig):
        return Err(types.SinkError_InvalidConfig(str(err)))
    if isinstance(err, Rejected):
        return Err(types.SinkError_Rejected(str(err)))
    return Err(types.SinkError_Transient(str(err)))


def _unpack(batch: types.Batch) -> Batch:
    messages, start = [], 0
    for end, timestamp in zip(batch.ends, batch.timestamps):
        messages.append(Message(batch.payloads[start:end], timestamp))
        start = end
    dynamic = {prop.name: list(prop.values) for prop in batch.dynamic}
    return Batch(messages, batch.sequence, dynamic)


def export(cls: type[Sink]) -> type:
    """The class componentize-py exports as `oort:sink/sink`: assign it to `Sink` in the app."""

    class Export(exports.Sink):
        sink: Optional[Sink] = None

        def _call(self, fn: Callable[[], None]) -> None:
            try:
                fn()
            except SinkError as e:
                raise _to_wit(e) from None
            except OSError as e:
                # I/O failures are passing faults: the host retries.
                raise _to_wit(Transient(str(e))) from None

        def _live(self) -> Sink:
            if self.sink is None:
                raise InvalidConfig("the host called the sink before `configure` succeeded")
            return self.sink

        def configure(self, ctx: types.Context, props: str) -> None:
            def run() -> None:
                try:
                    raw = json.loads(props)
                except ValueError as e:
                    raise InvalidConfig(f"props: {e}") from None
                context = Context(ctx.rule_id, ctx.action, ctx.instance, ctx.format, ctx.generation)
                # Errors name the prop, its value and the type expected; the host adds the action.
                Export.sink = cls(context, config_from(cls.Config, raw))

            self._call(run)

        def open(self, delivered: Optional[int]) -> None:
            self._call(lambda: self._live().open_after(delivered))

        def collect(self, batch: types.Batch) -> None:
            self._call(lambda: self._live().collect(_unpack(batch)))

        def close(self) -> None:
            def run() -> None:
                sink, Export.sink = Export.sink, None
                if sink is not None:
                    sink.close()

            self._call(run)

    Export.__name__ = Export.__qualname__ = "Sink"
    return Export
