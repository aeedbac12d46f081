"""The attendee- and organizer-facing web: sessions, CSRF, login, join flow, forms."""
