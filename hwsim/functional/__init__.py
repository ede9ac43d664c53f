"""hwsim.functional layer."""
