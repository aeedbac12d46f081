"""Rooms: what a room is (model), where rooms live (repository), the REST API, iCal."""
