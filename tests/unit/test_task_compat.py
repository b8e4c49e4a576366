"""Workers of two releases side by side read each other's tasks (docs/operations.md,
"Upgrades and rollback"): every task a past release published still decodes to what it
meant; a plain page task is written with the fields the previous release knows, so that
release's workers read it; a new field is optional; and a field this release does not know
is refused (the message goes to the dead-letter topic, to be replayed once every worker
reads it) rather than read without its meaning.

``tests/unit/golden/task_wire.json`` holds messages as each release wrote them. A release
that changes the task appends its own entry; the last test says so when it is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from backends.errors import InvalidInputError
from backends.task import Previous, Task, decode_task, encode_task

GOLDEN = Path(__file__).parent / "golden" / "task_wire.json"
RELEASES: list[dict[str, Any]] = json.loads(GOLDEN.read_text())["releases"]
CURRENT = RELEASES[-1]
PREVIOUS = RELEASES[-2]
# What a task has always had to say; everything else must be optional.
REQUIRED = ("execution_id", "url", "depth", "phase")


def previous_release_decoder() -> msgspec.json.Decoder[Any]:
    """A decoder as strict as the previous release's: its fields only, unknown ones refused."""
    fields = [(name, Any, None) for name in PREVIOUS["task_fields"]]
    struct = msgspec.defstruct("PreviousTask", fields, forbid_unknown_fields=True, kw_only=True)
    return msgspec.json.Decoder(struct)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(m, id=f"{r['release'][:12]}-{n}")
        for r in RELEASES
        for n, m in enumerate(r["messages"])
    ],
)
def test_every_task_a_past_release_published_decodes_to_what_it_said(wire: str) -> None:
    task = decode_task(wire.encode())
    for name, value in json.loads(wire).items():
        assert msgspec.to_builtins(getattr(task, name)) == value, name


def test_a_plain_page_task_is_written_with_the_previous_release_fields_only() -> None:
    older = previous_release_decoder()
    plain = Task(execution_id="ex-1", url="http://shop.test/", depth=0, phase="start")
    assert json.loads(encode_task(plain)) == {
        "execution_id": "ex-1",
        "url": "http://shop.test/",
        "depth": 0,
        "phase": "start",
    }
    linked = Task(
        execution_id="ex-1",
        url="http://shop.test/p/1",
        depth=1,
        phase="product",
        marker="product",
        parent="http://shop.test/",
        trace={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        published_at=1764547200.5,
    )
    for task in (plain, linked):
        assert older.decode(encode_task(task))  # a worker of the previous release reads it


def test_a_new_task_field_is_optional_and_left_out_at_its_default() -> None:
    assert Task.__struct_config__.omit_defaults
    required = tuple(f.name for f in msgspec.structs.fields(Task) if f.required)
    assert required == REQUIRED, (
        "only execution_id, url, depth and phase may be required: a task an older release "
        "wrote has no other field"
    )
    assert not any(f.required for f in msgspec.structs.fields(Previous))


def test_a_field_this_release_does_not_know_is_refused_naming_it() -> None:
    newer = (
        b'{"execution_id":"ex-1","url":"http://shop.test/","depth":0,"phase":"start","priority":5}'
    )
    with pytest.raises(InvalidInputError, match="unknown field `priority`") as refused:
        decode_task(newer)
    assert refused.value.error_class == "bad_task"  # a poison message: dead-lettered


def test_this_release_wrote_down_its_own_messages() -> None:
    assert list(Task.__struct_fields__) == CURRENT["task_fields"], (
        "the Task's fields changed: append this release to tests/unit/golden/task_wire.json "
        "with messages that use the new fields (docs/operations.md, Upgrades and rollback)"
    )
    assert list(Previous.__struct_fields__) == CURRENT["previous_fields"]
    for wire in CURRENT["messages"]:
        assert encode_task(decode_task(wire.encode())) == wire.encode()
