"""The home fleet. Groups are what the deploys dispatch on (group_data/<group>.py)."""

linux_servers = [
    "motoko",
]
motoko = ["motoko"]

linux_workstations = [
    "armitage",
]

macos = [
    "count-zero",
]
windows = [
    "wintermute",
]
