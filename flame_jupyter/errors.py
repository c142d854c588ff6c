"""flame_jupyter's user-facing errors: each says what happened and what to do."""

from __future__ import annotations


class FlameJupyterError(Exception):
    """Base class of every error flame_jupyter raises on purpose."""


class FlameConfigError(FlameJupyterError):
    """The Flame configuration (``~/.flame/flame.yaml`` or environment) is missing or broken."""


class FlameConnectionError(FlameJupyterError):
    """The Flame cluster (or the embedded runtime) cannot be reached or started."""


class RemoteError(FlameJupyterError):
    """A remote task failed, and its exception could not be rebuilt here as its own type.

    Remote exceptions come back as their own type whenever that type exists in the kernel and
    the exception rebuilds faithfully (``except ValueError`` then gets a real ``ValueError``,
    with ``remote_type`` and ``remote_traceback`` set on it). Otherwise the kernel gets a
    ``RemoteError`` subclass made for the remote type, named like it and, where that type (or
    one of its bases) exists here, also a subclass of it, so ``except TheType`` still works.

    ``str()`` is the remote message; ``remote_type`` names the remote type, ``remote_args`` and
    ``remote_attributes`` (name -> repr) say what it carried; attributes that travelled are set
    on the exception itself; ``__cause__`` / ``__context__`` and an exception group's members are
    rebuilt the same way. The remote traceback (with the notebook cell's own lines) is attached
    as an exception note, so plain Python prints it under the local traceback, and IPython shows
    it instead of the local frames (``_render_traceback_``).
    """

    remote_type: str = ""
    remote_traceback: str = ""
    remote_args: tuple[str, ...] = ()
    remote_attributes: dict[str, str] = {}  # noqa: RUF012 - read-only default

    def __init__(self, message: str, remote_type: str = "", remote_traceback: str = "") -> None:
        super().__init__(message)
        fill_remote(self, message, remote_type, remote_traceback)

    def __str__(self) -> str:
        base = self.__dict__.get("_remote_message")
        if base is None:
            base = super().__str__()
        if self.remote_traceback and not hasattr(self, "add_note"):  # Python 3.10: no notes
            return f"{base}\n\nRemote traceback (Flame executor):\n{self.remote_traceback.rstrip()}"
        return base

    def _render_traceback_(self) -> list[str]:
        """IPython shows this instead of the local frames: the remote traceback, cell lines included."""
        return RemoteTraceback(self.remote_traceback, self.remote_type or type(self).__name__, str(self))()


def fill_remote(
    err: BaseException,
    message: str,
    remote_type: str,
    remote_traceback: str,
    *,
    args: tuple[object, ...] | None = None,
    attributes: dict[str, str] | None = None,
    note: bool = True,
) -> None:
    """Give ``err`` (a :class:`RemoteError`, maybe made without ``__init__``) its remote facts.

    ``note``: add the traceback as a note (not for chained or grouped exceptions: the top one's
    traceback shows them already)."""
    err.__dict__["_remote_message"] = message
    err.remote_type = remote_type  # type: ignore[attr-defined]
    err.remote_traceback = remote_traceback  # type: ignore[attr-defined]
    err.remote_args = tuple(repr(a) for a in args) if args is not None else ()  # type: ignore[attr-defined]
    err.remote_attributes = dict(attributes or {})  # type: ignore[attr-defined]
    if note and remote_traceback and hasattr(err, "add_note"):
        err.add_note(REMOTE_NOTE + remote_traceback.rstrip())


#: How the remote traceback is introduced in an exception's notes.
REMOTE_NOTE = "Remote traceback (Flame executor):\n"


class RemoteTraceback:
    """What IPython shows for a remote exception (``_render_traceback_``): the remote frames.

    Set on rebuilt exceptions of the original type too, so a notebook shows the executor's
    frames rather than flame_jupyter's own (``futures.py``, ``threading.py``). Picklable.
    """

    def __init__(self, text: str, type_name: str = "", message: str = "") -> None:
        self.text = text
        self.type_name = type_name
        self.message = message

    def __call__(self) -> list[str]:
        if self.text:
            return ["Remote traceback (Flame executor):", *self.text.rstrip().splitlines()]
        return [f"{self.type_name}: {self.message}"]


class RemoteSystemExit(RemoteError):
    """Remote code called ``sys.exit()`` (or raised ``SystemExit``): ``code`` is its exit code.

    It is a :class:`RemoteError`, not a ``SystemExit``, so it never stops the kernel; the call
    failed, the executor goes on serving.
    """

    code: object = None


class RemoteKeyboardInterrupt(RemoteError):
    """``KeyboardInterrupt`` was raised in remote code (not by the kernel's interrupt button).

    It is a :class:`RemoteError`, not a ``KeyboardInterrupt``, so it does not interrupt the
    kernel; the call failed, the executor goes on serving.
    """


class CancelledError(FlameJupyterError):
    """The future was cancelled before it produced a result."""


class FlameJupyterWarning(UserWarning):
    """Something works, but not as the notebook suggests (e.g. a service runs an old definition)."""


class ResourceRequestError(FlameJupyterError, ValueError):
    """A ``--cpu/--memory`` (``resources=``) request larger than any node of the Flame in use."""


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
