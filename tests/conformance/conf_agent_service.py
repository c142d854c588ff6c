"""A flamepy.service FlameInstance for the conformance tests (the 'agent' programming model)."""

from __future__ import annotations

from conf_agent_api import Answer, Ask, Memo
from flamepy import service

instance = service.FlameInstance()


@instance.entrypoint
def answer(req: Ask) -> Answer:
    ctx = instance.context()
    before = ctx.text if ctx is not None else None
    if req.remember:
        instance.update_context(Memo(text=req.text))
    return Answer(text=req.text, memo=before)


if __name__ == "__main__":
    instance.run()
