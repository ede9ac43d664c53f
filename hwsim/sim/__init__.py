"""hwsim.sim layer."""
