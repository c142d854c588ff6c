"""The runtime's gRPC face: ``flame.v1.Frontend`` (:mod:`~flame_local.servers.frontend`) and the
same-user check on every call (:mod:`~flame_local.servers.peers`)."""
