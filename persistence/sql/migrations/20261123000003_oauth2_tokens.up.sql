-- One table per token kind, as fosite stores them. "signature" is the SHA-256 of the
-- token's fosite signature; "request_id" is the family (session) id shared by every
-- token that rotation derives from one login or grant.
CREATE TABLE oauth2_access (
  signature VARCHAR(64) PRIMARY KEY,
  request_id VARCHAR(64) NOT NULL,
  requested_at TIMESTAMP NOT NULL,
  client_id VARCHAR(255) NOT NULL,
  scope TEXT NOT NULL,
  granted_scope TEXT NOT NULL,
  requested_audience TEXT NOT NULL,
  granted_audience TEXT NOT NULL,
  form_data TEXT NOT NULL,
  session_data TEXT NOT NULL,
  subject VARCHAR(255) NOT NULL,
  device_id VARCHAR(36) NULL,
  active BOOLEAN NOT NULL DEFAULT TRUE,
  expires_at TIMESTAMP NULL
);
CREATE INDEX oauth2_access_request_idx ON oauth2_access (request_id, active);
CREATE INDEX oauth2_access_subject_idx ON oauth2_access (subject);
CREATE INDEX oauth2_access_device_idx ON oauth2_access (device_id);
CREATE INDEX oauth2_access_expires_idx ON oauth2_access (expires_at);

CREATE TABLE oauth2_refresh (
  signature VARCHAR(64) PRIMARY KEY,
  request_id VARCHAR(64) NOT NULL,
  requested_at TIMESTAMP NOT NULL,
  client_id VARCHAR(255) NOT NULL,
  scope TEXT NOT NULL,
  granted_scope TEXT NOT NULL,
  requested_audience TEXT NOT NULL,
  granted_audience TEXT NOT NULL,
  form_data TEXT NOT NULL,
  session_data TEXT NOT NULL,
  subject VARCHAR(255) NOT NULL,
  device_id VARCHAR(36) NULL,
  active BOOLEAN NOT NULL DEFAULT TRUE,
  expires_at TIMESTAMP NULL,
  access_token_signature VARCHAR(64) NULL,
  first_used_at TIMESTAMP NULL
);
CREATE INDEX oauth2_refresh_request_idx ON oauth2_refresh (request_id, active);
CREATE INDEX oauth2_refresh_subject_idx ON oauth2_refresh (subject);
CREATE INDEX oauth2_refresh_device_idx ON oauth2_refresh (device_id);
CREATE INDEX oauth2_refresh_expires_idx ON oauth2_refresh (expires_at);

CREATE TABLE oauth2_code (
  signature VARCHAR(64) PRIMARY KEY,
  request_id VARCHAR(64) NOT NULL,
  requested_at TIMESTAMP NOT NULL,
  client_id VARCHAR(255) NOT NULL,
  scope TEXT NOT NULL,
  granted_scope TEXT NOT NULL,
  requested_audience TEXT NOT NULL,
  granted_audience TEXT NOT NULL,
  form_data TEXT NOT NULL,
  session_data TEXT NOT NULL,
  subject VARCHAR(255) NOT NULL,
  device_id VARCHAR(36) NULL,
  active BOOLEAN NOT NULL DEFAULT TRUE,
  expires_at TIMESTAMP NULL
);
CREATE INDEX oauth2_code_request_idx ON oauth2_code (request_id, active);

CREATE TABLE oauth2_oidc (
  signature VARCHAR(64) PRIMARY KEY,
  request_id VARCHAR(64) NOT NULL,
  requested_at TIMESTAMP NOT NULL,
  client_id VARCHAR(255) NOT NULL,
  scope TEXT NOT NULL,
  granted_scope TEXT NOT NULL,
  requested_audience TEXT NOT NULL,
  granted_audience TEXT NOT NULL,
  form_data TEXT NOT NULL,
  session_data TEXT NOT NULL,
  subject VARCHAR(255) NOT NULL,
  device_id VARCHAR(36) NULL,
  active BOOLEAN NOT NULL DEFAULT TRUE,
  expires_at TIMESTAMP NULL
);
CREATE INDEX oauth2_oidc_request_idx ON oauth2_oidc (request_id, active);

CREATE TABLE oauth2_pkce (
  signature VARCHAR(64) PRIMARY KEY,
  request_id VARCHAR(64) NOT NULL,
  requested_at TIMESTAMP NOT NULL,
  client_id VARCHAR(255) NOT NULL,
  scope TEXT NOT NULL,
  granted_scope TEXT NOT NULL,
  requested_audience TEXT NOT NULL,
  granted_audience TEXT NOT NULL,
  form_data TEXT NOT NULL,
  session_data TEXT NOT NULL,
  subject VARCHAR(255) NOT NULL,
  device_id VARCHAR(36) NULL,
  active BOOLEAN NOT NULL DEFAULT TRUE,
  expires_at TIMESTAMP NULL
);
CREATE INDEX oauth2_pkce_request_idx ON oauth2_pkce (request_id, active);

CREATE TABLE signing_keys (
  kid VARCHAR(64) PRIMARY KEY,
  alg VARCHAR(16) NOT NULL,
  private_key TEXT NOT NULL,
  public_jwk TEXT NOT NULL,
  state VARCHAR(16) NOT NULL,
  created_at TIMESTAMP NOT NULL,
  retired_at TIMESTAMP NULL
);
