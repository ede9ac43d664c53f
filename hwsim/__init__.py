"""hwsim: hardware simulator and hierarchical roofline for AI accelerators."""

__version__ = "0.1.0"
