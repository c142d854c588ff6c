"""Application packages: fetch, safe extraction, project metadata, installation, prepare.

Flame v0.6.0 (``executor_manager/src/appmgr``) downloads an application's ``url``, unpacks it into a
fresh ``src`` directory and runs ``uv pip install --target <deps> .`` so that the instance process can
import the user's code (cloudpickle pickles module-level functions and classes *by reference*).
This package does the same job for a single machine without needing a package index, one stage
per module:

* :mod:`~flame_local.packages.fetch`: ``file://``, ``http(s)://`` and ``grpc://`` cache URLs;
* :mod:`~flame_local.packages.extract`: tar/zip unpacking that validates every member first;
* :mod:`~flame_local.packages.project`: the project's declared requirements and import roots;
* :mod:`~flame_local.packages.install`: pip-installs only what the interpreter lacks;
* :mod:`~flame_local.packages.prepare`: chains them; failures are :class:`PackageError` whose
  ``str()`` is Flame's bind detail ``application installation failed: <stage>: <message>``.
"""

from __future__ import annotations

from flame_local.packages.errors import PackageError
from flame_local.packages.extract import archive_kind, extract
from flame_local.packages.fetch import fetch
from flame_local.packages.install import InstallResult, install
from flame_local.packages.prepare import PreparedPackage, prepare

__all__ = [
    "InstallResult",
    "PackageError",
    "PreparedPackage",
    "archive_kind",
    "extract",
    "fetch",
    "install",
    "prepare",
]
