"""The web layer's URLs (added to orchestrator/routes.py)."""

from __future__ import annotations

from aiohttp import web

from orchestrator.web import auth, join, organize, pages


def web_routes() -> list[web.RouteDef]:
    return [
        web.get("/", pages.index, name="index"),
        web.get("/rooms", pages.room_list, name="rooms"),
        web.get("/rooms/new", organize.new_room, name="room_new"),
        web.post("/rooms/new", organize.create_room),
        web.get("/schedule", pages.schedule_page, name="schedule"),
        web.get("/calendar.ics", pages.calendar_feed, name="calendar"),
        web.get("/r/{slug}", pages.room_page, name="room"),
        web.post("/r/{slug}/join", join.join, name="join"),
        web.get("/r/{slug}/edit", organize.edit_room, name="room_edit"),
        web.post("/r/{slug}/edit", organize.update_room),
        web.get("/login", auth.login_page, name="login"),
        web.post("/login/ldap", auth.login_ldap, name="login_ldap"),
        web.post("/login/wiki", auth.login_wiki, name="login_wiki"),
        web.get("/login/wiki/callback", auth.wiki_callback, name="wiki_callback"),
        web.post("/logout", auth.logout, name="logout"),
    ]
