"""The Runner guide's definitions (../shared/seeds/runner-guide.md), shared by the tests that run
its examples through flamepy, the SDK and the magics."""

from __future__ import annotations

GUIDE_DEFS = """
def sum_fn(a: int, b: int) -> int:
    return a + b


class Counter:
    def __init__(self, initial: int = 0):
        self._count = initial

    def add(self, a: int) -> int:
        self._count = self._count + a
        return self._count

    def get_counter(self) -> int:
        return self._count


class Calculator:
    def multiply(self, a: int, b: int) -> int:
        return a * b


def greet(name: str, greeting: str = "Hello") -> str:
    return f"{greeting}, {name}!"
"""
