"""Downgrade protection of upgrade and deploy (rpm-ostree's --allow-downgrade)."""

from __future__ import annotations

import pytest
from sysrootenv import SysrootEnv

from bootree.errors import DowngradeError
from bootree.sysroot import DeployOptions, Origin, deploy
from bootree.sysroot.upgrade import check_downgrade, upgrade


def test_upgrade_refuses_an_older_commit(env: SysrootEnv) -> None:
    s = env.sysroot
    old = env.commit(1)
    new = env.commit(2)
    s.repo.set_ref("sampleos/stable", new)
    with s.lock():
        deploy(s, new, stateroot="sampleos", origin=Origin.for_refspec("sampleos/stable"), opts=DeployOptions())
    s = env.reopen()
    listing = [d.name for d in s.deployments]
    # The branch is moved back to the older (still validly signed) commit: upgrade refuses.
    s.repo.set_ref("sampleos/stable", old)
    with s.lock(), pytest.raises(DowngradeError) as exc:
        upgrade(s)
    assert exc.value.new == old and exc.value.current == new and "older than the current" in str(exc.value)
    assert [d.name for d in env.reopen().deployments] == listing
    s = env.reopen()
    with s.lock():
        result = upgrade(s, allow_downgrade=True)
    assert result.deployed is not None and env.reopen().deployments[0].csum == old
    # The booted/default deployment is now the old one: the newer commit is no downgrade.
    check_downgrade(env.reopen(), new, "sampleos")
    with pytest.raises(DowngradeError):
        check_downgrade(env.reopen(), env.commit(0), "sampleos")
