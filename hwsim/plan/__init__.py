"""hwsim.plan layer."""
