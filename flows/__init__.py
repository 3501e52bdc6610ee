"""Prefect flows and deployments: the unit operations, the campaign, and serving them.

``flows.operations`` has one flow per unit operation (seed, feed, passage,
harvest) whose parameters are the protocols' pydantic models; ``flows.campaign``
the expansion campaign; ``flows.serve`` the deployments the Prefect UI runs.
Every flow works on a run folder through a ``workcell.assembly.session.Session``,
so the flows triggered one after another from the UI carry the same workcell forward.
"""
