"""Concrete model pipelines built with lockgate, and the module ``workspace.yaml`` loads."""
