"""The stack on AWS, LocalStack or a moto server: one boto3 code path, chosen by configuration.

Entry points: `Stack(clients, settings)` (stack.py), `Clients(resolve_target(...))`
(clients.py), `emulator_clients()` (emulator.py), deploy|plan|status|destroy (cli.py); and
AWS's own rules as pure functions (sg_rules, subnet_routes) and lb_lookup.
May import only the shared core (config, errors, console, state): never local, grade, doctor.
"""
