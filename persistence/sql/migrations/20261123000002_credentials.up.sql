CREATE TABLE recovery_codes (
  id VARCHAR(36) PRIMARY KEY,
  identity_id BIGINT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
  code_hash VARCHAR(64) NOT NULL,
  used_at TIMESTAMP NULL,
  created_at TIMESTAMP NOT NULL
);
CREATE INDEX recovery_codes_identity_idx ON recovery_codes (identity_id);

CREATE TABLE login_flows (
  id VARCHAR(36) PRIMARY KEY,
  token_hash VARCHAR(64) NOT NULL,
  identity_id BIGINT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
  pending_totp_secret TEXT NULL,
  failed_attempts INTEGER NOT NULL DEFAULT 0,
  state VARCHAR(16) NOT NULL DEFAULT 'pending',
  remember_me BOOLEAN NOT NULL DEFAULT FALSE,
  expires_at TIMESTAMP NOT NULL,
  created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX login_flows_token_hash_idx ON login_flows (token_hash);
CREATE INDEX login_flows_identity_idx ON login_flows (identity_id);
