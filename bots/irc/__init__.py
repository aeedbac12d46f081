"""The IRC relay: posts a room's final captions into its IRC channel (docs/protocols.md §6).

protocol.py, lines.py and flood.py are pure; so is the protocol state, split as sopel
splits an IRC client: state.py (fed parsed lines, it says what to send) with
negotiation.py (CAP, SASL, nick, ISUPPORT), channels.py (joins, channel keys) and
delivery.py (confirmation), numerics.py and identifiers.py (names compared per
CASEMAPPING). client.py is the only module doing network I/O; source.py is where
caption events come from; relay.py ties rooms to channels and keeps each room's resume
position.
"""
