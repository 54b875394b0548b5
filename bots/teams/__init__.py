"""Microsoft Teams channel: the only package that imports botbuilder.

Wiring (done by app.py):
    auth = build_authentication(settings.teams)            # bots.teams.auth
    adapter = create_adapter(auth)                          # bots.teams.adapter
    endpoint = TeamsEndpoint(adapter, bot, claims=...)      # bot: an ActivityHandler, claims: ActivityClaims
                                                            # (core.chat.turns.TurnLeases: leased, crash-safe)
    app.router.add_routes(endpoint.routes())                # POST /api/messages
    notifier = TeamsNotifier(adapter, settings.teams.app_id)
"""
