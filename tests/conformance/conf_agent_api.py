"""Request, reply and context types shared by the agent-style service and its tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Memo:
    """The session context: one remembered text."""

    text: str | None = None


@dataclass
class Ask:
    """A request: ``text`` to echo; ``remember`` replaces the session's Memo with it."""

    text: str
    remember: bool = False


@dataclass
class Answer:
    """A reply: the echoed text and the Memo text the call started with."""

    text: str
    memo: str | None
