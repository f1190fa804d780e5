"""How the bench fails: as a whole, or one scenario at a time while the others go on."""


class BenchError(Exception):
    """Stops the bench with one line (nothing to build or run with)."""


class ScenarioError(Exception):
    """One scenario failed; its row reports this message and the bench goes on."""
