-- Rooms: the searchable columns plus the whole validated room as JSON (rooms.model.Room).
CREATE TABLE rooms (
    slug TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
