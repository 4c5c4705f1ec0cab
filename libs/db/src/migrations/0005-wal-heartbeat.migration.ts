// A commit on every primary every few seconds, written by the leading failover monitor
// (docs/reference.md section 11). Point-in-time recovery stops at the first commit after
// its target: without one, a shard that nobody wrote to since the target could never be
// restored to it ("recovery ended before configured recovery target was reached"). With
// archive_timeout, any moment older than that timeout plus one beat is restorable.
export default `
CREATE TABLE wal_heartbeat (
  id      smallint PRIMARY KEY CHECK (id = 1),
  beat_at timestamptz NOT NULL
);

-- The monitor's row alone: the default grants of migration 3 gave the writer and reader theirs.
REVOKE ALL ON wal_heartbeat FROM shortener_writer, shortener_reader;
GRANT SELECT, INSERT, UPDATE ON wal_heartbeat TO shortener_monitor;
`;
