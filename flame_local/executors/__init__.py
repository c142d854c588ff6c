"""Executors: the instances that run an application's service for one session.

* :mod:`~flame_local.executors.scheduler`: the pure rule of which session gets how many instances;
* :mod:`~flame_local.executors.manager`: applies it with threads and processes, one thread per instance;
* :mod:`~flame_local.executors.environment`: an instance's environment and installed package;
* :mod:`~flame_local.executors.instances`: one instance process and its ``flame.v1.Instance`` shim;
* :mod:`~flame_local.executors.warm`, :mod:`~flame_local.executors.warm_instance`: pre-started interpreters;
* :mod:`~flame_local.executors.framed_shim`: the shim calls as frames for warm instances;
* :mod:`~flame_local.executors.builtin_services`: Flame's ``flmexec`` and ``flmping``.

Modules here run in instance processes too (``python -m flame_local.executors.warm_instance``),
so this ``__init__`` imports nothing.
"""
