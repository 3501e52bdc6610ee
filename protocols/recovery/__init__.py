"""Recovery: what each unit operation declares for an interruption, and how a step resumes.

``declarations`` (per operation: each stage's policy and the biology's time windows),
``resumable`` (units of work that finish what is missing when re-entered),
``holds`` (asking the operator once per step; quarantine), ``finish`` (finishing the
interrupted steps a session found when it opened).
"""
