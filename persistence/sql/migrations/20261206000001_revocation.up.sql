-- The passkey a self-service session signed in with, on every token of its family
-- (rotation copies it), so that deleting the passkey ends exactly those sessions.
ALTER TABLE oauth2_access ADD COLUMN passkey_id VARCHAR(36) NULL;
ALTER TABLE oauth2_refresh ADD COLUMN passkey_id VARCHAR(36) NULL;
-- Revoking an identity also ends its unexchanged authorization codes and unfinished
-- OAuth2 hand-offs: both are found by the identity.
CREATE INDEX oauth2_code_subject_idx ON oauth2_code (subject);
CREATE INDEX oauth2_flows_identity_idx ON oauth2_flows (identity_id);
