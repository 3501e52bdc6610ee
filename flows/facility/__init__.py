"""Facility mode: several workcells on one Prefect server backed by PostgreSQL.

``postgres`` runs a PostgreSQL cluster for the server (a throw-away one in tests
and benchmarks), ``server`` starts ``prefect server start`` on it, ``deploy``
registers each workcell's work pool and deployments (``passage @ workcell-a``),
``worker`` runs a workcell's flow runs and brings back runs whose process died,
``shared`` guards a device two workcells share with a Prefect global concurrency
limit. ``children`` makes every process started here end with its parent.
"""
