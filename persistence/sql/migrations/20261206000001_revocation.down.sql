DROP INDEX oauth2_flows_identity_idx;
DROP INDEX oauth2_code_subject_idx;
ALTER TABLE oauth2_refresh DROP COLUMN passkey_id;
ALTER TABLE oauth2_access DROP COLUMN passkey_id;
