"""Everyday notebook output in a real kernel: plots, IPython displays, tqdm, live blocking cells,
``-o`` cells, labels, asyncio and result summaries (issue 16, display/output points)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kernel_helpers import ExecResult, KernelSession

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

DEFS = """
import time
def make_fig(n):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot(range(n))
    return fig
def nothing():
    return None
def frame():
    import pandas as pd
    return pd.DataFrame({"a": [1, 2, 3, 4], "b": [1.0, 2.0, 3.0, 4.0], "c": list("wxyz")})
def slow(x):
    time.sleep(3)
    return x
def bad(x):
    raise ValueError(f"bad {x}")
def add(a, b):
    return a + b
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, runtime) -> Iterator[KernelSession]:
    home: Path = tmp_path_factory.mktemp("ehome")
    env = {"HOME": str(home), **runtime.client_env()}
    with KernelSession(cwd=tmp_path_factory.mktemp("ecwd"), extra_env=env) as k:
        k.run("%load_ext flame_jupyter")
        k.run(DEFS)
        k.run(
            "%flame_service mkfig = make_fig\n%flame_service nothing_s = nothing\n"
            "%flame_service frame_s = frame\n%flame_service slow_s = slow\n"
            "%flame_service bad_s = bad\n%flame_service add_s = add"
        )
        yield k


def ok(k: KernelSession, code: str, timeout: float = 120) -> ExecResult:
    r = k.execute(code, timeout=timeout)
    assert r.status == "ok", r.error_text() + r.stderr
    return r


def test_matplotlib_is_not_imported_unless_the_code_does(kernel: KernelSession) -> None:
    ok(kernel, "%%flame --no-block --session nompl\nimport sys\n'matplotlib' in sys.modules")
    assert kernel.value("_.get(60)") is False


def test_plot_show_and_open_figures_come_back_as_png_in_order(kernel: KernelSession) -> None:
    code = (
        "%%flame --no-block\nimport matplotlib.pyplot as plt\nprint('before')\n"
        "plt.plot([1, 3, 2]); plt.show()\nprint('after')\nplt.figure(); plt.plot([2, 1])\n"
    )
    ok(kernel, code)
    ok(kernel, "f = _; f.wait(60)")
    assert kernel.value("f.state") == "done", kernel.value("repr(f.error)")
    displays = kernel.value("[sorted(d) for d in f.displays]")
    assert len(displays) == 2, displays  # plt.show() and the figure left open at the end
    assert all("image/png" in d for d in displays), displays
    assert kernel.value("f.displays[0]['image/png'][:8]") == "iVBORw0K"  # base64 of the PNG signature
    text = kernel.value("f.text")
    assert text == "before\nafter\n", text  # no "Figure(640x480)"


def test_blocking_plot_cell_renders_an_image_once(kernel: KernelSession) -> None:
    r = ok(kernel, "%%flame\nimport matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()\n'ok'")
    assert "Figure(" not in r.stdout + r.stderr
    widget_state = kernel.value("[sorted(d) for d in _.displays]")
    assert widget_state == [["image/png", "text/plain"]], widget_state


def test_returned_figure_renders_once_and_is_not_left_in_pyplot(kernel: KernelSession) -> None:
    ok(kernel, "import matplotlib.pyplot as plt\nplt.close('all')")
    r = ok(kernel, "fig = mkfig(4).get()")
    assert not [d for d in r.displays if "image/png" in d.get("data", {})], r.displays
    assert kernel.value("plt.get_fignums()") == []
    r = ok(kernel, "fig")
    assert "image/png" in (r.result or {}), r.result
    later = ok(kernel, "1 + 1")  # an unrelated cell: the figure does not reappear
    assert not [d for d in later.displays if "image/png" in d.get("data", {})]


def test_ipython_display_objects_arrive_as_rich_displays(kernel: KernelSession) -> None:
    code = (
        "%%flame --no-block\nfrom IPython.display import display, HTML, Markdown, Image\n"
        "import pandas as pd\nprint('one')\ndisplay(HTML('<b>bold</b>'))\ndisplay(Markdown('# Title'))\n"
        "display(pd.DataFrame({'x': [1, 2]}).style.highlight_max())\n"
        "class Rich:\n    def _repr_html_(self):\n        return '<i>rich</i>'\ndisplay(Rich())\nprint('two')\n"
    )
    ok(kernel, code)
    ok(kernel, "f = _; f.wait(60)")
    assert kernel.value("f.state") == "done", kernel.value("repr(f.error)")
    displays = kernel.value("f.displays")
    assert [d.get("text/html", d.get("text/markdown")) for d in displays][:2] == ["<b>bold</b>", "# Title"]
    assert "<table" in displays[2].get("text/html", "") or "<style" in displays[2].get("text/html", "")
    assert displays[3]["text/html"] == "<i>rich</i>"
    assert len(displays) == 4
    assert kernel.value("f.text") == "one\ntwo\n"


def test_blocking_cell_shows_its_widget_at_submit_and_ends_as_one_output(kernel: KernelSession) -> None:
    code = "%%flame\nimport time\nfor i in range(3):\n    print('line', i)\n    time.sleep(0.4)\n42"
    r = ok(kernel, code)
    skip = ("status", "execute_input", "comm_open", "comm_msg")
    kinds = [m["msg_type"] for m in r.messages if m["msg_type"] not in skip]
    assert kinds[0] == "display_data" and kinds[1] == "stream", kinds  # the live widget, then output
    first = next(m for m in r.messages if m["msg_type"] == "display_data")["content"]
    display_id = first.get("transient", {}).get("display_id")
    assert WIDGET_VIEW in first["data"] and display_id, first
    assert r.stdout == "line 0\nline 1\nline 2\n", r.stdout  # streamed once, in the cell
    assert kinds[-2:] == ["update_display_data", "execute_result"], kinds
    last = [m for m in r.messages if m["msg_type"] == "update_display_data"][-1]["content"]
    assert last["transient"]["display_id"] == display_id and last["data"] == {"text/plain": ""}
    assert "done" in r.text and "line" not in r.text, r.text  # the value: no second copy of the output
    assert kernel.value("_.get()") == 42


def test_blocking_cell_without_widgets_streams_text(kernel: KernelSession) -> None:
    ok(kernel, "from flame_jupyter.views import set_widgets; set_widgets(False)")
    try:
        r = ok(kernel, "%%flame\nprint('plain', 1)\n7")
    finally:
        ok(kernel, "set_widgets(None)")
    assert r.stdout == "plain 1\n", r.stdout
    assert not [m for m in r.messages if m["msg_type"] in ("display_data", "update_display_data")]


@pytest.mark.parametrize("module", ["tqdm", "tqdm.auto", "tqdm.notebook"])
def test_tqdm_is_one_bar_and_drives_progress(kernel: KernelSession, module: str) -> None:
    code = (
        f"%%flame --no-block\nfrom {module} import tqdm\nimport time\n"
        "for i in tqdm(range(6), desc='steps', mininterval=0):\n    time.sleep(0.05)\nprint('end')\n"
    )
    ok(kernel, code)
    ok(kernel, "f = _; f.wait(60)")
    assert kernel.value("f.state") == "done", kernel.value("repr(f.error)")
    assert kernel.value("f.progress") == [6.0, 6.0, "steps"]
    text = kernel.value("f.text")
    lines = text.splitlines()
    assert len(lines) == 2 and lines[1] == "end", lines  # one bar line, then "end"
    assert "steps: 100%" in lines[0] and "\r" not in text and "IProgress" not in text, lines
    plain = kernel.value("__import__('flame_jupyter.views').views.static_bundle(f)['text/plain']")
    assert plain.count("steps:") == 1, plain


def test_out_cell_widget_shows_the_value_and_the_bound_names(kernel: KernelSession) -> None:
    code = "%%flame -o df,n\nimport pandas as pd\ndf = pd.DataFrame({'q': range(50)})\nn = 3\nn * 2"
    r = ok(kernel, code)
    assert "result: 6" in r.text, r.text
    assert "dict" not in r.text and "'outputs'" not in r.text and "q" not in r.text.split("result:")[1], (
        r.text
    )
    assert "df" in r.text and "n" in r.text


def test_labels_and_traceback_name_the_cells_own_number(kernel: KernelSession) -> None:
    r = kernel.execute("%%flame --no-block\n1")
    number = next(m for m in r.messages if m["msg_type"] == "execute_input")["content"]["execution_count"]
    assert kernel.value("_.label") == f"%%flame In[{number}]"
    r = kernel.execute("%%flame\nraise KeyError('k')")
    number = next(m for m in r.messages if m["msg_type"] == "execute_input")["content"]["execution_count"]
    assert r.error is not None
    assert f"<flame cell In[{number}]>" in "\n".join(r.error["traceback"]), r.error["traceback"]


def test_await_returns_done_future_raises_remote_error_and_wait_for_is_quiet(kernel: KernelSession) -> None:
    r = ok(kernel, "import asyncio\nres = await add_s(1, 2)\nres.get()")
    assert r.text == "3"
    r = ok(kernel, "try:\n    await bad_s(1)\nexcept ValueError as e:\n    print('caught', e)")
    assert r.stdout == "caught bad 1\n", r.stdout + r.stderr
    r = ok(
        kernel,
        "try:\n    await asyncio.wait_for(slow_s(9), 0.1)\nexcept asyncio.TimeoutError:\n    print('timeout')",
    )
    assert r.stdout == "timeout\n"
    later = ok(kernel, "import time; time.sleep(1.0); 5", timeout=60)
    for out in (r, later):
        assert "CancelledError" not in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_result_summaries_say_none_and_shape(kernel: KernelSession) -> None:
    ok(kernel, "from flame_jupyter.widgets.preview import fetch_preview")
    ok(kernel, "n0 = nothing_s(); n0.wait(60)")
    assert kernel.value("fetch_preview(n0)['result_info']") == "None"
    ok(kernel, "fr = frame_s(); fr.wait(60)")
    assert kernel.value("fetch_preview(fr)['result_info']").startswith("DataFrame 4×3")
