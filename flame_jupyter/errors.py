"""flame_jupyter's user-facing errors: each says what happened and what to do."""

from __future__ import annotations


class FlameJupyterError(Exception):
    """Base class of every error flame_jupyter raises on purpose."""


class FlameConfigError(FlameJupyterError):
    """The Flame configuration (``~/.flame/flame.yaml`` or environment) is missing or broken."""


class FlameConnectionError(FlameJupyterError):
    """The Flame cluster (or the embedded runtime) cannot be reached or started."""


class RemoteError(FlameJupyterError):
    """A remote task failed; ``remote_type`` and ``remote_traceback`` say how.

    ``str()`` is the remote message; the remote traceback (with the notebook cell's own lines) is
    attached as an exception note, so plain Python prints it under the local traceback, and
    IPython shows it instead of the local frames (``_render_traceback_``).
    """

    def __init__(self, message: str, remote_type: str = "", remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        if remote_traceback and hasattr(self, "add_note"):
            self.add_note("Remote traceback (Flame executor):\n" + remote_traceback.rstrip())

    def __str__(self) -> str:
        base = super().__str__()
        if self.remote_traceback and not hasattr(self, "add_note"):  # Python 3.10: no notes
            return f"{base}\n\nRemote traceback (Flame executor):\n{self.remote_traceback.rstrip()}"
        return base

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of the local frames: the remote traceback, cell lines included."""
        if self.remote_traceback:
            return ["Remote traceback (Flame executor):", *self.remote_traceback.rstrip().splitlines()]
        name = self.remote_type or type(self).__name__
        return [f"{name}: {Exception.__str__(self)}"]


class CancelledError(FlameJupyterError):
    """The future was cancelled before it produced a result."""


# The Runner guide's troubleshooting errors, with what to do about each (flamepy texts as keys).
GUIDE_ERRORS = {
    "Package configuration is not set": (
        "flamepy needs somewhere to put the application package. With flame_jupyter nothing is needed for the "
        "embedded runtime or for a cluster with an object cache; for shared-filesystem storage add "
        "`package: {storage: file:///shared/dir}` to the context in ~/.flame/flame.yaml."
    ),
    "Failed to get flmrun application template": (
        "The cluster has no `flmrun` application, which every Runner service is derived from. Ask your Flame "
        "administrator to register it (Flame registers it at start-up), or set `runner: {template: <app>}` in "
        "~/.flame/flame.yaml to use another template."
    ),
    "Storage directory does not exist": (
        "The `package.storage` directory in ~/.flame/flame.yaml does not exist on this machine. Create it (it must "
        "be a filesystem shared with the executors) or remove `package.storage` to upload packages to the cache."
    ),
    "Package path not found": (
        "The executors cannot see the package under `package.storage`: it must be a filesystem shared by this "
        "machine and every executor node (e.g. NFS), mounted at the same path."
    ),
}


def explain(message: str) -> str | None:
    """The advice for a known flamepy/Flame error message, if there is one."""
    for key, advice in GUIDE_ERRORS.items():
        if key.lower() in message.lower():
            return advice
    if "Failed to get application template" in message or "'NoneType' object has no attribute" in message:
        return GUIDE_ERRORS["Failed to get flmrun application template"]
    return None
