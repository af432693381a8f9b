-- The WebAuthn user handle of an identity: random, never shown, stable.
CREATE TABLE webauthn_user_handles (
  identity_id BIGINT PRIMARY KEY REFERENCES identities(id) ON DELETE CASCADE,
  handle VARCHAR(128) NOT NULL
);
CREATE UNIQUE INDEX webauthn_user_handles_handle_idx ON webauthn_user_handles (handle);

CREATE TABLE webauthn_credentials (
  id VARCHAR(36) PRIMARY KEY,
  identity_id BIGINT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
  credential_id VARCHAR(1400) NOT NULL,
  name VARCHAR(255) NOT NULL,
  credential_data TEXT NOT NULL,
  attestation_type VARCHAR(32) NOT NULL DEFAULT '',
  aaguid VARCHAR(36) NOT NULL DEFAULT '',
  sign_count BIGINT NOT NULL DEFAULT 0,
  clone_warning BOOLEAN NOT NULL DEFAULT FALSE,
  transports TEXT NOT NULL DEFAULT '[]',
  backup_eligible BOOLEAN NOT NULL DEFAULT FALSE,
  backup_state BOOLEAN NOT NULL DEFAULT FALSE,
  is_active BOOLEAN NOT NULL DEFAULT TRUE,
  last_used_at TIMESTAMP NULL,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX webauthn_credentials_credential_idx ON webauthn_credentials (credential_id);
CREATE INDEX webauthn_credentials_identity_idx ON webauthn_credentials (identity_id);

-- Registration and login ceremonies, single use.
CREATE TABLE webauthn_sessions (
  id VARCHAR(36) PRIMARY KEY,
  kind VARCHAR(16) NOT NULL,
  identity_id BIGINT NULL REFERENCES identities(id) ON DELETE CASCADE,
  name VARCHAR(255) NULL,
  session_data TEXT NOT NULL,
  used_at TIMESTAMP NULL,
  expires_at TIMESTAMP NOT NULL,
  created_at TIMESTAMP NOT NULL
);
CREATE INDEX webauthn_sessions_expires_idx ON webauthn_sessions (expires_at);
