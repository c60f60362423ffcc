"""Host policy: bootc's declarative view of a machine and its verbs (issue 11).

Layer: host (above ``sysroot`` and ``oci``, below ``cli``). :mod:`~bootree.host.model` is the
``org.containers.bootc/v1`` ``BootcHost`` document that ``status`` prints;
:mod:`~bootree.host.bootc` implements ``switch``, ``upgrade``, ``rollback`` and ``status`` on a
sysroot by pulling with :mod:`bootree.oci` and deploying with :mod:`bootree.sysroot`.
"""
