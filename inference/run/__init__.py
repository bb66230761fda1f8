"""A whole predict run: one tomogram end to end, the run and its work folder, checks, the deadline, doctor."""
