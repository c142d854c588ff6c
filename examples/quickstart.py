"""The Runner guide's examples with the unmodified flamepy client, as a plain script.

Run it against the embedded runtime with ``flame-local run -- python examples/quickstart.py``
(``./dev demo`` does exactly that), or against a Flame cluster by configuration alone.
"""

from __future__ import annotations

import os
import tempfile

from flamepy.runner import Runner


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


def greet(name: str, greeting: str = "Hello") -> str:
    return f"{greeting}, {name}!"


def main() -> None:
    # flamepy's Runner packages the current directory; give it an empty one.
    os.chdir(tempfile.mkdtemp(prefix="flame-quickstart-"))
    with Runner("quickstart") as rr:
        print("sum_fn(1, 3)                  ->", rr.service(sum_fn)(1, 3).get())
        cnt_s = rr.service(Counter)
        cnt_s.add(1)
        cnt_s.add(3)
        print("Counter: add 1, add 3         ->", cnt_s.get_counter().get())
        cnt_os = rr.service(Counter(10))
        cnt_os.add(1)
        cnt_os.add(3)
        res = cnt_os.get_counter()
        print("Counter(10): add 1, add 3     ->", res.get())
        cnt_os.add(res)
        print("add(<that future>)            ->", cnt_os.get_counter().get())
        print("greet(name='World', 'Hi')     ->", rr.service(greet)(name="World", greeting="Hi").get())


if __name__ == "__main__":
    main()
