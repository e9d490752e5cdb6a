"""Facts of the container runtime standard, one module per concept.

Several facts gather what they need in ONE shell command whose parts are separated by marker
lines (``@@name``); :func:`split_sections` cuts that output back into its parts.
"""

from dataclasses import asdict

SECTION_PREFIX = "@@"


class FactValue:
    """Base of the dataclasses facts return: ``to_json`` is the hook pyinfra's CLI uses to
    print a fact (``pyinfra HOST fact facts.podman.PodmanInfo``)."""

    def to_json(self) -> dict:
        return asdict(self)


def section(name: str) -> str:
    """The shell snippet that prints the marker line opening section ``name``."""
    return f"echo '{SECTION_PREFIX}{name}';"


def split_sections(lines: list[str]) -> dict[str, list[str]]:
    """Group output lines under the ``@@name`` marker that precedes them.

    Lines before the first marker are dropped (nothing we print goes there). A marker line may
    carry a value after a space (``@@file /etc/x.conf``); the key is then the whole marker text
    after ``@@``, so repeated ``@@file`` sections stay apart.
    """
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith(SECTION_PREFIX):
            current = sections.setdefault(line[len(SECTION_PREFIX) :].strip(), [])
        elif current is not None:
            current.append(line)
    return sections
