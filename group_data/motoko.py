"""motoko (Fedora Server, standard §5.2): store on the second drive, NVIDIA GPU via CDI, and the
production services of §3.1 (Nextcloud with its database and Redis, LiteLLM, vLLM embeddings).

The second drive is already mounted at /space on motoko, so no podman_storage_device is
declared here: the deploy never formats or mounts anything on it.

Secrets never live in this repository: each names an environment variable that must be set
on the controller running pyinfra (``NEXTCLOUD_DB_PASSWORD``, ``NEXTCLOUD_ADMIN_PASSWORD``,
``LITELLM_MASTER_KEY``: e.g. ``NEXTCLOUD_DB_PASSWORD=… pyinfra …``); the deploy stops before
sending any command when one is missing.
"""

# The embeddings model: vLLM serves it under _EMBED_NAME, LiteLLM's config lists it.
_EMBED_MODEL = "BAAI/bge-m3"
_EMBED_NAME = "embed"

podman_graphroot = "/space/containers/engine/podman"
podman_runroot = "/run/containers/storage"
podman_nvidia_enabled = True
podman_service_root = "/space/containers/apps"

podman_services = [
    {
        "name": "nextcloud-db",
        "image": "docker.io/library/postgres:16.6",
        "network": "nextcloud",
        "env": {"POSTGRES_DB": "nextcloud", "POSTGRES_USER": "nextcloud"},
        "secrets": {"POSTGRES_PASSWORD": {"env": "NEXTCLOUD_DB_PASSWORD"}},
        "volumes": [{"source": "data", "target": "/var/lib/postgresql/data"}],
        "healthcheck": {"command": "pg_isready -U nextcloud -d nextcloud", "interval": "30s"},
    },
    {
        "name": "nextcloud-redis",
        "image": "docker.io/library/redis:7.4.1",
        "network": "nextcloud",
        "command": ["redis-server", "--appendonly", "yes"],
        "volumes": [{"source": "data", "target": "/data"}],
        "healthcheck": {"command": "redis-cli ping", "interval": "30s"},
    },
    {
        "name": "nextcloud-app",
        "image": "docker.io/library/nextcloud:30.0.4-apache",
        "network": "nextcloud",
        "requires": ["nextcloud-db", "nextcloud-redis"],
        "ports": [{"host": 8080, "container": 80}],
        # The official image installs Nextcloud on its first start (an empty html volume)
        # when the whole database group (POSTGRES_HOST, _DB, _USER, _PASSWORD) and both admin
        # values are set: no install page. These are read at install only; later changes
        # go through occ.
        "env": {
            "POSTGRES_HOST": "nextcloud-db",  # the db's container name on the nextcloud network
            "POSTGRES_DB": "nextcloud",  # as nextcloud-db creates it
            "POSTGRES_USER": "nextcloud",
            "REDIS_HOST": "nextcloud-redis",  # file locking and the memory cache
            "NEXTCLOUD_ADMIN_USER": "admin",
            # Space-separated: the names clients reach it by (any other Host is refused).
            "NEXTCLOUD_TRUSTED_DOMAINS": "motoko motoko.local",
        },
        "secrets": {
            "POSTGRES_PASSWORD": {"env": "NEXTCLOUD_DB_PASSWORD"},  # the same as nextcloud-db's
            "NEXTCLOUD_ADMIN_PASSWORD": {"env": "NEXTCLOUD_ADMIN_PASSWORD"},
        },
        "volumes": [{"source": "html", "target": "/var/www/html"}],
        # Nextcloud's background jobs: its docs ask for cron.php every 5 minutes as www-data.
        "timers": [
            {
                "name": "cron",
                "on_calendar": "*:0/5",
                "command": ["php", "-f", "/var/www/html/cron.php"],
                "container_user": "www-data",
            }
        ],
    },
    {
        "name": "vllm-embeddings",
        "image": "docker.io/vllm/vllm-openai:v0.9.0.1",
        "network": "llm",
        "command": ["--model", _EMBED_MODEL, "--task", "embed", "--served-model-name", _EMBED_NAME],
        "devices": ["nvidia.com/gpu=all"],
        # vLLM's docs: PyTorch shares tensors between its processes through /dev/shm, which
        # podman sizes 64m by default; they ask for --ipc=host or a large --shm-size.
        "shm_size": "8g",
        "volumes": [{"source": "hf-cache", "target": "/root/.cache/huggingface"}],
    },
    {
        # Reaches vLLM as http://vllm-embeddings:8000 on the llm network (podman's DNS: the
        # container's name); its model list is config/config.yaml, written from a template.
        "name": "litellm",
        "image": "ghcr.io/berriai/litellm:v1.80.11-stable.1",
        "network": "llm",
        "command": ["--config", "/app/config/config.yaml", "--port", "4000"],
        "ports": [{"host": 4000, "container": 4000}],
        "secrets": {"LITELLM_MASTER_KEY": {"env": "LITELLM_MASTER_KEY"}},
        "volumes": [{"source": "config", "target": "/app/config", "read_only": True}],
        # LiteLLM reads its config at start only: a change restarts it (no reload declared).
        "files": [
            {
                "path": "config/config.yaml",
                "template": "litellm-config.yaml.j2",
                "vars": {
                    "models": [
                        {
                            "name": _EMBED_NAME,  # what clients ask LiteLLM for
                            "served_name": _EMBED_NAME,
                            "api_base": "http://vllm-embeddings:8000/v1",
                        }
                    ]
                },
            }
        ],
    },
]
