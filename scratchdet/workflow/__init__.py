"""The workflow's decisions in tested Python: scales, paper-table rows, run configs, the plan."""

__all__ = []  # the modules are imported by name
