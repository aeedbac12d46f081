"""The composition root: the only place that imports both ``orchestrator`` and ``bots``.

Every command (``plenary serve``, ``irc``, ``captioner serve``, ``demo``, …) is wired here."""
