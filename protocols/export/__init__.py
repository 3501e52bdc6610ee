"""Protocols exported for other robots' own software (the OT-2's ``run(protocol)``)."""
