"""OpenSession: get an open session, create it from a spec, refuse mismatches and closed sessions."""

from __future__ import annotations

from collections.abc import Iterator

import flamepy
import pytest
from conf_support import registered, uid


@pytest.fixture(scope="module")
def app(runtime) -> Iterator[str]:
    with registered(uid("conf-open"), flamepy.ApplicationAttributes()) as name:
        yield name


def _spec(sid: str, app: str, max_instances: int) -> flamepy.SessionAttributes:
    return flamepy.SessionAttributes(id=sid, application=app, min_instances=0, max_instances=max_instances)


def test_open_without_spec_returns_the_open_session(app: str) -> None:
    sid = uid("conf-open")
    made = flamepy.create_session(application=app, session_id=sid)
    opened = flamepy.open_session(sid)
    assert (opened.id, opened.application, opened.state) == (made.id, app, flamepy.SessionState.OPEN)
    flamepy.close_session(sid)


def test_open_with_spec_creates_a_missing_session_and_is_idempotent(app: str) -> None:
    sid = uid("conf-open")
    with pytest.raises(flamepy.FlameError):
        flamepy.get_session(sid)
    first = flamepy.open_session(sid, spec=_spec(sid, app, 5))
    assert (first.id, first.application, first.state) == (sid, app, flamepy.SessionState.OPEN)
    again = flamepy.open_session(sid, spec=_spec(sid, app, 5))
    bare = flamepy.open_session(sid)
    assert first.id == again.id == bare.id and first.application == again.application == bare.application
    assert [s.id for s in flamepy.list_sessions()].count(sid) == 1
    flamepy.close_session(sid)


def test_open_with_a_matching_spec_returns_the_existing_session(app: str) -> None:
    sid = uid("conf-open")
    flamepy.create_session(application=app, session_id=sid, min_instances=0, max_instances=10)
    opened = flamepy.open_session(sid, spec=_spec(sid, app, 10))
    assert (opened.id, opened.application) == (sid, app)
    flamepy.close_session(sid)


def test_open_with_a_mismatched_spec_is_refused(app: str) -> None:
    sid = uid("conf-open")
    flamepy.create_session(application=app, session_id=sid, min_instances=0, max_instances=10)
    with pytest.raises(Exception) as err:
        flamepy.open_session(sid, spec=_spec(sid, app, 5))
    text = str(err.value).lower()
    assert "spec mismatch" in text or "max_instances" in text, text
    assert flamepy.get_session(sid).state == flamepy.SessionState.OPEN
    flamepy.close_session(sid)


def test_open_of_an_unknown_session_without_spec_is_not_found(app: str) -> None:
    with pytest.raises(Exception) as err:
        flamepy.open_session(uid("conf-missing"))
    assert "not found" in str(err.value).lower()


def test_open_of_a_closed_session_is_refused(app: str) -> None:
    sid = uid("conf-open")
    flamepy.create_session(application=app, session_id=sid)
    flamepy.close_session(sid)
    with pytest.raises(Exception) as err:
        flamepy.open_session(sid)
    text = str(err.value).lower()
    assert "not open" in text or "closed" in text or "invalid" in text, text
