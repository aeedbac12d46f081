"""Identity and access: who someone is (LDAP, MediaWiki) and what they may join.

No web views live here; the web layer drives these pieces:

    identity = await directory.authenticate(username, password)   # ldap.py
    identity = await wiki.identity(code, verifier, redirect_uri)   # wiki.py
    decision = await decide(room.policy, identity, wiki)           # policy.py
    if decision.allowed:
        token = mint(settings.jitsi, room=slug, identity=identity,
                     moderator=decision.moderator)                  # jitsi_jwt.py
        url = join_url(settings.jitsi, slug, token, low_bandwidth=False)

Every failure is an AccessError (errors.py); a source that cannot be reached raises
IdentitySourceUnavailable and never lets anyone in.
"""
