"""One test per cell of the permission map. The expected table is written out here, apart
from the code, so a change to either shows up as a failing cell."""

import pytest

from console.roles import PERMISSIONS, Role, assignable_roles, role_can

# permission: owner admin developer finance viewer
EXPECTED = """
overview.view     y y y y y
members.view      y y y y y
members.manage    y y n n n
account.manage    y y n n n
audit.view        y y n n n
projects.view     y y y y y
projects.manage   y y y n n
caps.manage       y y n n n
keys.view         y y y n y
keys.manage       y y y n n
keys.admin_read   y y n n n
usage.view        y y y y y
history.view      y y y n n
history.delete    y n n n n
playground.use    y y y n n
billing.view      y y n y n
billing.manage    y y n y n
alerts.manage     y y n y n
"""
ROLES = [Role.OWNER, Role.ADMIN, Role.DEVELOPER, Role.FINANCE, Role.VIEWER]
TABLE = {
    line.split()[0]: dict(zip(ROLES, (cell == "y" for cell in line.split()[1:]), strict=True))
    for line in EXPECTED.strip().splitlines()
}
CELLS = [(permission, role) for permission in TABLE for role in ROLES]


def test_the_table_covers_every_permission():
    assert set(TABLE) == set(PERMISSIONS)


@pytest.mark.parametrize(("permission", "role"), CELLS)
def test_cell(permission, role):
    assert role_can(role, permission) is TABLE[permission][role]


def test_no_role_holds_nothing_and_unknown_permissions_are_errors():
    assert not role_can(None, "overview.view")
    with pytest.raises(KeyError):
        role_can(Role.OWNER, "no.such.permission")


def test_finance_and_viewer_never_see_prompt_content():
    for role in (Role.FINANCE, Role.VIEWER):
        assert not role_can(role, "history.view")
        assert not role_can(role, "playground.use")


def test_only_owners_hand_out_the_owner_role():
    assert Role.OWNER in assignable_roles(Role.OWNER)
    assert Role.OWNER not in assignable_roles(Role.ADMIN)
    assert assignable_roles(Role.DEVELOPER) == []
    assert assignable_roles(Role.FINANCE) == []
