DROP INDEX oauth2_access_subject_device_idx;
DROP INDEX oauth2_refresh_subject_device_idx;
CREATE INDEX oauth2_access_subject_idx ON oauth2_access (subject);
CREATE INDEX oauth2_refresh_subject_idx ON oauth2_refresh (subject);
CREATE INDEX oauth2_access_device_idx ON oauth2_access (device_id);
CREATE INDEX oauth2_refresh_device_idx ON oauth2_refresh (device_id);
