"""How futures and the status panel look, without widgets: view models and static renderings.

- :mod:`~flame_jupyter.display.protocol`: the reads the display makes on a future (a ``Protocol``).
- :mod:`~flame_jupyter.display.states`: the state names (from :mod:`flame_jupyter.remote.wire`) and colours.
- :mod:`~flame_jupyter.display.bundles`: display bundles made safe to show (trimmed, bounded).
- :mod:`~flame_jupyter.display.future_view`: ``FutureView``, everything a future's view shows.
- :mod:`~flame_jupyter.display.future_static`: a ``FutureView`` as text/plain and text/html.
- :mod:`~flame_jupyter.display.panel_view`: ``PanelView``, the status panel's data (declared).
- :mod:`~flame_jupyter.display.panel_status`: ``PanelView`` gathered from the registry and Flame.
- :mod:`~flame_jupyter.display.flame_sessions`: what Flame reports (sessions, instances; blocking).
- :mod:`~flame_jupyter.display.panel_static`: a ``PanelView`` as text/plain and text/html.

Nothing here imports a widget: :mod:`flame_jupyter.widgets` builds on these models, and
:mod:`flame_jupyter.views` / :mod:`flame_jupyter.status_panel` choose between the two.
"""
