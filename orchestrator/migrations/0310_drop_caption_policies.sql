-- Caption policy is owned by rooms (rooms.model: transcript_retention_days), asked at
-- every caption; the table the store once guessed from is gone.
DROP TABLE caption_policies;
