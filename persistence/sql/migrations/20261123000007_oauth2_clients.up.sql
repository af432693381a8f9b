CREATE TABLE oauth2_clients (
  id VARCHAR(255) PRIMARY KEY,
  client_name VARCHAR(255) NOT NULL DEFAULT '',
  secret_hash VARCHAR(128) NOT NULL DEFAULT '',
  redirect_uris TEXT NOT NULL DEFAULT '[]',
  grant_types TEXT NOT NULL DEFAULT '[]',
  response_types TEXT NOT NULL DEFAULT '[]',
  scope TEXT NOT NULL DEFAULT '',
  audience TEXT NOT NULL DEFAULT '[]',
  token_endpoint_auth_method VARCHAR(32) NOT NULL,
  skip_consent BOOLEAN NOT NULL DEFAULT FALSE,
  created_at TIMESTAMP NOT NULL,
  updated_at TIMESTAMP NOT NULL
);

-- The login and consent hand-off of one authorization request. Challenges and
-- verifiers are stored as SHA-256 hashes.
CREATE TABLE oauth2_flows (
  id VARCHAR(36) PRIMARY KEY,
  client_id VARCHAR(255) NOT NULL,
  request_query TEXT NOT NULL,
  requested_scope TEXT NOT NULL,
  login_challenge VARCHAR(64) NOT NULL,
  login_verifier VARCHAR(64) NULL,
  consent_challenge VARCHAR(64) NULL,
  consent_verifier VARCHAR(64) NULL,
  identity_id BIGINT NULL REFERENCES identities(id) ON DELETE CASCADE,
  amr TEXT NOT NULL DEFAULT '[]',
  auth_time TIMESTAMP NULL,
  granted_scope TEXT NOT NULL DEFAULT '',
  state VARCHAR(24) NOT NULL,
  expires_at TIMESTAMP NOT NULL,
  created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX oauth2_flows_login_challenge_idx ON oauth2_flows (login_challenge);
CREATE INDEX oauth2_flows_login_verifier_idx ON oauth2_flows (login_verifier);
CREATE INDEX oauth2_flows_consent_challenge_idx ON oauth2_flows (consent_challenge);
CREATE INDEX oauth2_flows_consent_verifier_idx ON oauth2_flows (consent_verifier);

-- Remembered consent: a later request of the same client for these scopes skips the consent screen.
CREATE TABLE oauth2_consents (
  identity_id BIGINT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
  client_id VARCHAR(255) NOT NULL REFERENCES oauth2_clients(id) ON DELETE CASCADE,
  granted_scope TEXT NOT NULL,
  created_at TIMESTAMP NOT NULL,
  PRIMARY KEY (identity_id, client_id)
);
