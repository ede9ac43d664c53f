"""hwsim.cli layer."""
