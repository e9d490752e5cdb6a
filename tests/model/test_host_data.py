"""The data model: what group_data may say, and the messages a bad value gets."""

import enum
import json
from pathlib import Path

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


# --- the README's host-data reference is the model's -----------------------------------------


def _reference_rows() -> list[tuple[str, str]]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Host data reference", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `podman_")]
    return [(row[0].removeprefix("| ").strip("`"), row[1]) for row in rows]


def _shown(value) -> str:
    """A default as the reference writes it: JSON-ish, in backticks."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "none"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def test_the_readme_reference_lists_every_key_in_the_models_order():
    keys = [key for key, _ in _reference_rows()]
    assert keys == [f"podman_{name}" for name in HostData.model_fields], keys


def test_the_readme_reference_shows_each_models_default():
    model = HostData()
    for key, shown in _reference_rows():
        default = getattr(model, key.removeprefix("podman_"))
        if key == "podman_registries":  # the search list stands for the whole default
            assert shown == ", ".join(model.registries.search), key
        elif key == "podman_phases":
            assert set(default) == set(Phase) and shown == "all", key
        else:
            value = default.model_dump(mode="json") if hasattr(default, "model_dump") else default
            # a default may be followed by what a host class or group sets instead
            assert shown.split(" (", 1)[0] == _shown(value), (key, shown, _shown(value))
