// Codes compare byte-wise (COLLATE "C"): they are case-sensitive and the primary-key
// index then needs no locale-aware comparison.
export default `
CREATE TABLE urls (
  code              text COLLATE "C" PRIMARY KEY,
  url               text NOT NULL,
  redirect_type     smallint NOT NULL DEFAULT 302 CHECK (redirect_type IN (301, 302, 307, 308)),
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  expires_at        timestamptz,
  deleted_at        timestamptz,
  manage_token_hash bytea NOT NULL,
  clicks            bigint NOT NULL DEFAULT 0
);

-- Transactional outbox: written in the same transaction as the link, relayed to Kafka.
CREATE TABLE outbox (
  id         bigserial PRIMARY KEY,
  topic      text NOT NULL,
  key        text NOT NULL,
  payload    text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE idempotency_keys (
  key          text COLLATE "C" PRIMARY KEY,
  request_hash bytea NOT NULL,
  response     jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Highest url.clicks offset applied on this shard, per partition: makes a redelivered
-- batch a no-op, so counts are exact.
CREATE TABLE click_offsets (
  kafka_partition int PRIMARY KEY,
  last_offset     bigint NOT NULL
);
`;
