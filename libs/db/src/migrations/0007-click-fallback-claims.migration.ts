// Click batches the writer applies straight to the primaries while Kafka is away (the
// gateway's fallback, apps/writer/src/click-applier.ts): one row per batch and code, claimed
// in the transaction that adds the code's count. A batch retried under its id adds nothing
// twice, also when some of its codes changed shard in between (a part refused by a slot's
// write fence is retried on the slot's new owner, beside codes that were already counted
// there). Claims were keys of idempotency_keys before: that table is guarded and moved by
// the slot of the key, so a claim key in a slot that had moved away was refused on the shard
// that needed it.
// No slot guard: the urls row each claim counts is guarded. The slot mover copies a moved
// slot's claims to the new owner at the switch (by the index on the code's slot), so a batch
// applied on the old owner whose answer was lost adds nothing there either.
export default `
CREATE TABLE click_fallback_claims (
  batch_id   text        NOT NULL,
  code       text        NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (batch_id, code)
);
CREATE INDEX click_fallback_claims_claimed_at ON click_fallback_claims (claimed_at);
CREATE INDEX click_fallback_claims_slot ON click_fallback_claims (shortener_slot(code));

-- The writer claims and expires; the monitor copies a moved slot's claims; the reader has no use for them.
REVOKE ALL ON click_fallback_claims FROM shortener_reader;
GRANT SELECT, INSERT, DELETE ON click_fallback_claims TO shortener_writer;
GRANT SELECT, INSERT ON click_fallback_claims TO shortener_monitor;
`;
