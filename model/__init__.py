"""The typed data model: what group_data and host data may say (see host_data.py)."""

from model.host_data import HostData
from model.validate import HostDataError, current_host_data, validate_inventory

__all__ = ["HostData", "HostDataError", "current_host_data", "validate_inventory"]
