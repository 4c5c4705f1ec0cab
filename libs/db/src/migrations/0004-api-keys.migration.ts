// API keys and link ownership (docs/reference.md section 8).
//
// A key's row lives on the shard that owns its id on the ring, like a link on the shard
// that owns its code: a lookup is one primary-key read on one replica, revoking is one
// write on one primary, and no table has to be kept equal on every shard. The gateways
// cache what they read for at most API_KEY_CACHE_SECONDS, so a revocation reaches all of
// them within that time plus replication lag.
//
// urls.owner is the id of the key a link was created with (NULL: anonymous). The two
// partial indexes answer GET /api/urls on every shard without a scan, read backwards
// for newest first: a key's links, and (for the admin) everyone's. Tombstones are left
// out of both: the listing never shows them, and they keep their primary-key entry.
// Click-count updates change neither indexed column, so they stay HOT updates.
export default `
CREATE TABLE api_keys (
  id                    text COLLATE "C" PRIMARY KEY,
  name                  text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  secret_hash           bytea NOT NULL,
  rate_limit_per_minute integer CHECK (rate_limit_per_minute BETWEEN 1 AND 100000),
  created_at            timestamptz NOT NULL DEFAULT now(),
  revoked_at            timestamptz
);

ALTER TABLE urls ADD COLUMN owner text COLLATE "C";
CREATE INDEX urls_listing_by_owner ON urls (owner, created_at, code) WHERE deleted_at IS NULL;
CREATE INDEX urls_listing_all ON urls (created_at, code) WHERE deleted_at IS NULL;

-- Keys are revoked, never deleted: the writer needs no DELETE (the default grants of
-- migration 3 gave it one), the reader reads them.
REVOKE DELETE ON api_keys FROM shortener_writer;
GRANT SELECT, INSERT, UPDATE ON api_keys TO shortener_writer;
GRANT SELECT ON api_keys TO shortener_reader;
`;
