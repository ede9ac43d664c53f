"""Spec layer: YAML files with human units → validated, SI-unit pydantic models."""

from hwsim.spec.errors import SpecError

__all__ = ["SpecError"]
