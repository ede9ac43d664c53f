"""Training steps on clusters: a forward/backward layer graph timed op by op on the device's
mapper, pipeline schedules played on simpy, data-parallel and optimizer costs, memory per GPU,
layout search (``hwsim train``; ``docs/training.md``)."""
