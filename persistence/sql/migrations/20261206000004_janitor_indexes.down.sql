DROP INDEX IF EXISTS login_flows_expires_idx;
DROP INDEX IF EXISTS oauth2_flows_expires_idx;
DROP INDEX IF EXISTS oauth2_code_expires_idx;
DROP INDEX IF EXISTS oauth2_oidc_expires_idx;
DROP INDEX IF EXISTS oauth2_pkce_expires_idx;
