"""``python -m otelmetrics.agent``: the same as the ``otelmetrics-agent`` command."""
import sys

from otelmetrics.agent.cli import main

sys.exit(main())
