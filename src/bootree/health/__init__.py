"""Health checks after boot and the boot assessment that follows from them (greenboot's job).

Layer: health, above sysroot (beside install; neither imports the other). After every boot,
:func:`~bootree.health.assess.assess_boot` notices a fallback the loader made (a newer entry out
of tries), records it and makes the rollback permanent; runs the checks of
``/usr/lib/bootree/health.d`` and ``/etc/bootree/health.d`` (:mod:`bootree.health.checks`);
and then either blesses the booted entry (as ``systemd-bless-boot good``) or records the failure
and asks for a reboot, so the loader counts the next attempt down.
"""

from bootree.health.assess import AssessResult, assess_boot
from bootree.health.checks import CheckResult, HealthCheck, discover, run_checks

__all__ = ["AssessResult", "CheckResult", "HealthCheck", "assess_boot", "discover", "run_checks"]
