"""What runs on the operator's machine: provisioning, local testbed, grader, doctor."""
