"""``python -m workcell.cli``: the same commands as the ``workcell`` script."""

from workcell.cli.app import app

app()
