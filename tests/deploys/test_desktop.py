"""The Podman Desktop opt-in through the entry point, on pyinfra's @fake connector: off (the
default), Windows and macOS hosts get no command and no fact; on, each platform gets its own
installer's operations and a podman machine; servers refuse it."""

import pytest

from model import HostDataError
from tests.deploys.test_linux_baseline import _fake, _load, _ops, _plan

ON = {"enabled": True}


def _names(state, host) -> list[str]:
    return [n.rsplit(" | ", 1)[-1] for names in _ops(state, host) for n in names]


def test_off_by_default_desktop_hosts_stay_untouched(tmp_path, monkeypatch):
    state, hosts = _plan(
        tmp_path,
        monkeypatch,
        f"macos = [{_fake('mac')!r}]\nwindows = [{_fake('win')!r}]\n"
        f"linux_workstations = [{_fake('ws')!r}]\n",
    )
    _load(state)
    for name in ("@fake/mac", "@fake/win"):
        assert _ops(state, hosts[name]) == []
        assert hosts[name].connector.executed_commands == []  # not even a fact
    assert not any("Podman Desktop" in n for n in _names(state, hosts["@fake/ws"]))


@pytest.mark.parametrize(
    "group,expected",
    [
        (
            "macos",
            [
                "Install podman (Homebrew)",
                "Install Podman Desktop (Homebrew cask)",
                "Podman machine of the login user",
            ],
        ),
        (
            "windows",
            [
                "Install podman (winget)",
                "Install Podman Desktop (winget)",
                "Podman machine of the login user",
            ],
        ),
        ("linux_workstations", ["Install Flatpak", "Flatpak remote flathub"]),
    ],
)
def test_on_each_platform_gets_its_installer(tmp_path, monkeypatch, group, expected):
    # One host per plan: pyinfra's op names are shared by op position across hosts.
    state, hosts = _plan(tmp_path, monkeypatch, f"{group} = [{_fake('h', podman_desktop=ON)!r}]\n")
    _load(state)
    names = _names(state, hosts["@fake/h"])
    if group == "linux_workstations":
        # After the workstation pattern; the Flatpak itself is pyinfra's flatpak.packages.
        assert names[-3:] == [*expected, "Install Podman Desktop (Flatpak)"], names
    else:
        assert names == expected
        # No sudo on Windows and macOS (group data): brew refuses root, Windows has none.
        assert hosts["@fake/h"].data.get("_sudo") is False


def test_servers_refuse_it(tmp_path, monkeypatch):
    state, _ = _plan(
        tmp_path, monkeypatch, f"linux_servers = [{_fake('srv', podman_desktop=ON)!r}]\n"
    )
    with pytest.raises(HostDataError) as info:
        _load(state)
    assert "servers run no GUI tools" in str(info.value)
