"""Prefect flows and deployments that run protocols and campaigns.

The flows wrap the protocols in ``protocols/`` as Prefect tasks and the expansion
campaign as a flow; they arrive with the orchestration work (issue 5). Nothing
here yet is called by the CLI.
"""
