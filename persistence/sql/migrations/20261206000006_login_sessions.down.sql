ALTER TABLE oauth2_clients DROP COLUMN post_logout_redirect_uris;
ALTER TABLE oauth2_flows DROP COLUMN login_session_id;
ALTER TABLE oauth2_flows DROP COLUMN remember;
DROP TABLE login_session_families;
DROP TABLE login_sessions;
