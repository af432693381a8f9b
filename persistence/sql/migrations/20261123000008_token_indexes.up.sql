-- A token is revoked by subject (logout everywhere, a disabled identity) or by subject
-- and device (a deleted device): one (subject, device_id) index serves both, and every
-- index less is a page less written per token on the login path.
DROP INDEX oauth2_access_device_idx;
DROP INDEX oauth2_refresh_device_idx;
DROP INDEX oauth2_access_subject_idx;
DROP INDEX oauth2_refresh_subject_idx;
CREATE INDEX oauth2_access_subject_device_idx ON oauth2_access (subject, device_id);
CREATE INDEX oauth2_refresh_subject_device_idx ON oauth2_refresh (subject, device_id);
