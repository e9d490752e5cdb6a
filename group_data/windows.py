"""Windows hosts (standard §4, §8.3): Docker Desktop stays; only verified, never changed."""

podman_host_class = "desktop"
