"""hwsim.roofline layer."""
