CREATE TABLE devices (
  id VARCHAR(36) PRIMARY KEY,
  identity_id BIGINT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
  device_name VARCHAR(255) NOT NULL,
  device_type VARCHAR(16) NOT NULL,
  device_fingerprint VARCHAR(255) NOT NULL,
  key_algorithm VARCHAR(8) NOT NULL,
  public_key TEXT NOT NULL,
  fcm_token TEXT NULL,
  is_active BOOLEAN NOT NULL DEFAULT TRUE,
  last_used_at TIMESTAMP NULL,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
-- A fingerprint belongs to at most one active device, across all users.
CREATE UNIQUE INDEX devices_active_fingerprint_idx ON devices (device_fingerprint) WHERE is_active = TRUE;
CREATE INDEX devices_identity_idx ON devices (identity_id);

-- Challenges of device registration ("register") and mobile login ("login"). Only the
-- SHA-256 of the challenge is kept: it is the digest the signature is verified against.
CREATE TABLE device_challenges (
  id VARCHAR(36) PRIMARY KEY,
  kind VARCHAR(16) NOT NULL,
  identity_id BIGINT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
  device_id VARCHAR(36) NOT NULL,
  challenge_hash VARCHAR(64) NOT NULL,
  device_name VARCHAR(255) NULL,
  device_type VARCHAR(16) NULL,
  device_fingerprint VARCHAR(255) NULL,
  key_algorithm VARCHAR(8) NULL,
  public_key TEXT NULL,
  used_at TIMESTAMP NULL,
  expires_at TIMESTAMP NOT NULL,
  created_at TIMESTAMP NOT NULL
);
CREATE INDEX device_challenges_expires_idx ON device_challenges (expires_at);

CREATE TABLE confirmations (
  id VARCHAR(36) PRIMARY KEY,
  identity_id BIGINT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
  action_type VARCHAR(100) NOT NULL,
  action_payload TEXT NULL,
  challenge_hash VARCHAR(64) NOT NULL,
  status VARCHAR(16) NOT NULL,
  device_id VARCHAR(36) NULL,
  reason VARCHAR(500) NULL,
  expires_at TIMESTAMP NOT NULL,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE INDEX confirmations_identity_idx ON confirmations (identity_id, created_at);
