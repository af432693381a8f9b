-- The janitor finds expired rows by these.
CREATE INDEX IF NOT EXISTS login_flows_expires_idx ON login_flows (expires_at);
CREATE INDEX IF NOT EXISTS oauth2_flows_expires_idx ON oauth2_flows (expires_at);
CREATE INDEX IF NOT EXISTS oauth2_code_expires_idx ON oauth2_code (expires_at);
CREATE INDEX IF NOT EXISTS oauth2_oidc_expires_idx ON oauth2_oidc (expires_at);
CREATE INDEX IF NOT EXISTS oauth2_pkce_expires_idx ON oauth2_pkce (expires_at);
