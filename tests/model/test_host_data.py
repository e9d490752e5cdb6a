"""The data model: what group_data may say, and the messages a bad value gets."""

import pytest
from pydantic import ValidationError
from pyinfra.api import Config, Inventory, State

from model.host_data import HostData, Phase
from model.validate import HostDataError, host_errors, validate_inventory


def test_defaults_follow_the_standard():
    cfg = HostData()
    assert cfg.graphroot == "/var/lib/containers/storage"
    assert cfg.runroot == "/run/containers/storage"
    assert cfg.registries.search == ["docker.io", "quay.io", "ghcr.io"]
    assert cfg.nvidia_enabled == "auto"
    assert cfg.phases == list(Phase)


def test_seed_motoko_values_are_accepted():
    cfg = HostData.model_validate(
        {
            "host_class": "server",
            "graphroot": "/space/containers/engine/podman",
            "runroot": "/run/containers/storage",
            "nvidia_enabled": True,
            "storage_device": {"device": "/dev/nvme1n1", "mount_point": "/space"},
            "rootless_users": [{"name": "miket", "subid_start": 200000}],
            "registries": {
                "registries": [
                    {"prefix": "docker.io", "mirrors": [{"location": "mirror.gcr.io"}]},
                ]
            },
        }
    )
    assert cfg.storage_device.fstype == "ext4"
    assert cfg.storage_device.format_if_blank is False
    assert cfg.registries.registries[0].mirrors[0].location == "mirror.gcr.io"


def test_phases_from_the_command_line_string():
    assert HostData.model_validate({"phases": "install, config"}).phases == [
        Phase.install,
        Phase.config,
    ]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"graphroot": "space/containers"}, "absolute path"),
        ({"graphroot": "/space/../etc"}, "'..'"),
        ({"graphroot": "/space//x"}, "normalised"),
        ({"host_class": "mainframe"}, "Input should be 'server', 'workstation' or 'desktop'"),
        ({"docker_compat": "alias"}, "Input should be"),
        ({"nvidia_enabled": "yes please"}, "auto"),
        ({"rootless_users": [{"name": "bob; rm -rf /"}]}, "not a valid user name"),
        (
            {"rootless_users": [{"name": "bob", "subid_count": 10}]},
            "greater than or equal to 65536",
        ),
        ({"rootless_users": [{"name": "a"}, {"name": "a"}]}, "lists a user twice"),
        ({"extra_packages": ["vim && curl x"]}, "not a valid package name"),
        ({"host_class": "desktop", "desktop": {"enabled": True}}, "needs desktop_platform"),
        ({"desktop": {"flatpak_remote_url": "http://x/y.flatpakrepo"}}, "https URL"),
        ({"desktop": {"flatpak_remote": "a b"}}, "not a valid remote name"),
        ({"desktop_platform": "linux"}, "Input should be 'macos' or 'windows'"),
        ({"registries": {"search": ["https://docker.io"]}}, "not a valid search registry"),
        # containers-registries.conf(5): what podman would refuse, making every pull fail.
        ({"registries": {"search": ["quay.io/myorg"]}}, "not a valid search registry"),
        ({"registries": {"search": ["*.example.com"]}}, "not a valid search registry"),
        ({"registries": {"registries": [{"prefix": "*.example.com/x"}]}}, "registry prefix"),
        ({"registries": {"registries": [{"prefix": "*.example.com:5000"}]}}, "registry prefix"),
        ({"registries": {"registries": [{"prefix": "ex.*.com"}]}}, "registry prefix"),
        (
            {"registries": {"registries": [{"prefix": "a.io", "location": "*.b.io"}]}},
            "registry location",
        ),
        (
            {"registries": {"registries": [{"prefix": "*.a.io", "location": "m.a.io"}]}},
            "is a wildcard: it cannot have a location",
        ),
        (
            {
                "registries": {
                    "registries": [
                        {"prefix": "a.io", "location": "m.io"},
                        {"prefix": "b.io", "location": "m.io", "insecure": True},
                    ]
                }
            },
            "prefixes a.io and b.io both use location m.io with a different 'insecure'",
        ),
        (
            {
                "registries": {
                    "registries": [
                        {"prefix": "m.io/x", "location": "m.io", "blocked": True},
                        {"prefix": "m.io"},
                    ]
                }
            },
            "with a different 'blocked'",
        ),
        (
            {"registries": {"registries": [{"prefix": "quay.io"}, {"prefix": "quay.io"}]}},
            "unique",
        ),
        ({"storage_device": {"device": "/tmp/disk", "mount_point": "/space"}}, "device path"),
        # fstab fields are separated by whitespace: such a line is never matched again.
        ({"storage_device": {"device": "/dev/vdb", "mount_point": "/my disk"}}, "mount point ("),
        ({"storage_device": {"device": "/dev/vdb", "mount_point": "/a\tb"}}, "mount point ("),
        *(
            ({"storage_device": {"device": "/dev/vdb", "mount_point": path}}, "system directory")
            for path in ["/", "/var", "/usr", "/etc", "/home", "/boot", "/boot/efi", "/run/x"]
        ),
        (
            {
                "graphroot": "/var/lib/containers/storage",
                "storage_device": {"device": "/dev/vdb", "mount_point": "/space"},
            },
            "not under storage_device.mount_point",
        ),
        ({"storage_device": {"device": "/dev/vdb", "mount_point": "/s", "fstype": "zfs"}}, "ext4"),
        ({"phases": []}, "at least 1"),
        ({"phases": "install,deploy"}, "Input should be"),
        ({"graphrot": "/x"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_values_are_rejected(data, needle):
    with pytest.raises(ValidationError) as info:
        HostData.model_validate(data)
    assert needle in str(info.value)


def _inventory(hosts, groups=None, data=None):
    inventory = Inventory((hosts, data or {}), **(groups or {}))
    State(inventory, Config())
    return inventory


def test_errors_name_host_key_source_and_expectation():
    inventory = _inventory(
        [("good", {}), ("bad", {"podman_graphroot": "relative/path"})],
        groups={"motoko": (["good"], {"podman_graphrot": "/x", "ssh_user": "ok"})},
    )
    errors = [e for host in inventory for e in host_errors(host)]
    assert errors == [
        "good: podman_graphrot (group_data/motoko.py): did you mean podman_graphroot?",
        "bad: podman_graphroot (host data in the inventory): Value error, "
        "must be an absolute path, got 'relative/path'",
    ]


def test_validate_inventory_raises_one_error_for_all_hosts():
    inventory = _inventory(
        [("a", {"podman_host_class": "mainframe"}), ("b", {"podman_socket_enabled": "maybe"})]
    )
    with pytest.raises(HostDataError) as info:
        validate_inventory(inventory)
    message = str(info.value)
    assert message.startswith("Invalid host data, nothing was run on any host:")
    assert "a: podman_host_class" in message and "b: podman_socket_enabled" in message


def test_non_namespaced_keys_pass_through():
    inventory = _inventory(
        [("h", {"ssh_port": 2222, "_sudo": True, "podman_socket_enabled": True})]
    )
    validate_inventory(inventory)


def test_a_wildcard_prefix_is_written_without_a_location():
    # containers-registries.conf(5): "*.example.com" matches without rewriting the reference;
    # a location equal to the wildcard (the default for other prefixes) is refused by podman.
    from operations.registries import registries_toml

    cfg = HostData.model_validate(
        {
            "registries": {
                "registries": [
                    {"prefix": "*.example.com", "mirrors": [{"location": "m.example.com:5000"}]},
                    {"prefix": "quay.io/org", "insecure": True},
                ]
            }
        }
    )
    doc = registries_toml(
        cfg.registries.search,
        cfg.registries.short_name_mode.value,
        cfg.registries.model_dump()["registries"],
    )
    assert doc["registry"] == [
        {"prefix": "*.example.com", "mirror": [{"location": "m.example.com:5000"}]},
        {"prefix": "quay.io/org", "location": "quay.io/org", "insecure": True},
    ]
