"""motoko (Fedora Server, standard §5.2): store on the second drive, NVIDIA GPU via CDI.

The second drive is already mounted at /space on motoko, so no podman_storage_device is
declared here: the deploy never formats or mounts anything on it.
"""

podman_graphroot = "/space/containers/engine/podman"
podman_runroot = "/run/containers/storage"
podman_nvidia_enabled = True
podman_service_root = "/space/containers/apps"
