"""hwsim.report layer."""
