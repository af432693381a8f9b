-- ids are UUIDv7, so ordering by id is ordering by time.
CREATE TABLE audit_events (
  id VARCHAR(36) PRIMARY KEY,
  type VARCHAR(64) NOT NULL,
  user_id BIGINT NULL,
  device_id VARCHAR(36) NULL,
  ip VARCHAR(64) NOT NULL DEFAULT '',
  user_agent VARCHAR(512) NOT NULL DEFAULT '',
  result VARCHAR(16) NOT NULL,
  reason VARCHAR(255) NULL,
  metadata TEXT NOT NULL DEFAULT '{}',
  created_at TIMESTAMP NOT NULL
);
CREATE INDEX audit_events_user_idx ON audit_events (user_id, id);
CREATE INDEX audit_events_type_idx ON audit_events (type, id);
CREATE INDEX audit_events_created_idx ON audit_events (created_at);
