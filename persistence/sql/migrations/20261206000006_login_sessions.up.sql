-- Browser login sessions (OpenID Connect SSO): a login accepted with remember keeps the
-- browser signed in; the cookie's value is stored as its SHA-256. Families (fosite
-- request ids) of the tokens issued under a session are listed, so that a logout ends
-- them.
CREATE TABLE login_sessions (
  id VARCHAR(36) PRIMARY KEY,
  token_hash VARCHAR(64) NOT NULL,
  identity_id BIGINT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
  amr TEXT NOT NULL DEFAULT '[]',
  auth_time TIMESTAMP NOT NULL,
  expires_at TIMESTAMP NOT NULL,
  created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX login_sessions_token_idx ON login_sessions (token_hash);
CREATE INDEX login_sessions_identity_idx ON login_sessions (identity_id);
CREATE INDEX login_sessions_expires_idx ON login_sessions (expires_at);

CREATE TABLE login_session_families (
  login_session_id VARCHAR(36) NOT NULL REFERENCES login_sessions(id) ON DELETE CASCADE,
  request_id VARCHAR(64) NOT NULL,
  PRIMARY KEY (login_session_id, request_id)
);

ALTER TABLE oauth2_flows ADD COLUMN remember BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE oauth2_flows ADD COLUMN login_session_id VARCHAR(36) NULL;
ALTER TABLE oauth2_clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';
