"""hwsim.validate layer."""
