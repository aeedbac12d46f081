"""The IRC relay: posts a room's final captions into its IRC channel (docs/protocols.md §6).

protocol.py, lines.py and flood.py are pure; client.py is the only module doing
network I/O; source.py is where caption events come from; relay.py ties rooms to
channels and keeps each room's resume position.
"""
