"""The expansion campaign: its rules and engine (``engine``), the operator
housekeeping between steps (``housekeeping``) and the batch report (``report``).

The campaign is a protocol of protocols: it decides from the store and the clock
which unit operation comes next and runs it through a session.
"""
