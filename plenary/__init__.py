"""Plenary's shared core: settings, caption events and their wire schema, fan-out,
metrics exposition, scoring and the speech corpus. It imports neither the web app
(``orchestrator``) nor the workers (``bots``); ``plenary.compose`` alone wires them."""
