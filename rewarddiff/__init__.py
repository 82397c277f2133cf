"""rewarddiff: the shared core of the reward-guided diffusion design pipeline.

The core holds the diffusion maths, oracles, fine-tuning methods, checkpoints and the CLI stages.
It never imports a domain package: domains (``seqgen``, ``molgen``, ``shapes``) register a
``Domain`` object and their oracles through :mod:`rewarddiff.domain` and the entry-point groups
``rewarddiff.domains`` and ``rewarddiff.oracles``.
"""

__version__ = "0.1.0"


class UserError(Exception):
    """Bad input from the user (file, record, config key): reported as one line, exit code 2."""
