"""Importable code for the Runner flows; the tests copy this file into the project the Runner packages."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    return a + b


def times(a: int, b: int) -> int:
    return a * b


def hello(name: str, greeting: str = "Hello") -> str:
    return f"{greeting}, {name}!"


def echo_case(text: str, reply: str, note: str) -> dict[str, str]:
    return {"text": text, "reply": reply, "note": note}


class Arith:
    """Stateless methods (a class service gets a fresh instance per executor)."""

    def plus(self, a: int, b: int) -> int:
        return a + b

    def times(self, a: int, b: int) -> int:
        return a * b

    def minus(self, a: int, b: int) -> int:
        return a - b


class Tally:
    """Stateful: an instance service keeps its total between calls."""

    def __init__(self, start: int = 0) -> None:
        self.total = start

    def bump(self) -> int:
        self.total += 1
        return self.total

    def add(self, value: int) -> int:
        self.total += value
        return self.total

    def value(self) -> int:
        return self.total


class Nested:
    """Calls itself through a new Runner on the same session (open_session) ``depth`` times."""

    _session_context = None

    def depth(self, n: int) -> int:
        from flamepy.runner import Runner

        ctx = self._session_context
        if ctx is None:
            raise ValueError("Nested needs a _session_context")
        if n <= 0:
            return 1
        with Runner(ctx.application_name) as inner:
            svc = inner.service(type(self), autoscale=True)
            return 2 * svc.depth(n - 1).get()
