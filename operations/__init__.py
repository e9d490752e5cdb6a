"""Composable operations of the standard (see operations/README.md)."""

from ._run_status import count_failures_of_current_run

count_failures_of_current_run()
