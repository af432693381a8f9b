DROP TABLE signing_keys; DROP TABLE oauth2_pkce; DROP TABLE oauth2_oidc; DROP TABLE oauth2_code; DROP TABLE oauth2_refresh; DROP TABLE oauth2_access;
