ALTER TABLE oauth2_flows DROP COLUMN browser_hash;
