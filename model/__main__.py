"""Print the JSON schema of the host data keys: ``python -m model [--output FILE]``.

Keys carry their ``podman_`` prefix, as they are written in group_data, so an editor
can complete and check them.
"""

import argparse
import json
import sys

from model.host_data import NAMESPACE, HostData


def schema() -> dict:
    base = HostData.model_json_schema()
    base["properties"] = {NAMESPACE + k: v for k, v in base["properties"].items()}
    base["title"] = "podman-standard host data"
    # Other (non-podman_) keys belong to pyinfra and its connectors.
    base["additionalProperties"] = True
    base["propertyNames"] = {
        "not": {"pattern": f"^{NAMESPACE}(?!({'|'.join(HostData.model_fields)})$)"}
    }
    return base


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    parser.add_argument("--output", "-o", help="write to this file instead of stdout")
    args = parser.parse_args(argv)
    text = json.dumps(schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
