-- The browser that started an OAuth2 hand-off: SHA-256 of its binding cookie.
ALTER TABLE oauth2_flows ADD COLUMN browser_hash VARCHAR(64) NOT NULL DEFAULT '';
