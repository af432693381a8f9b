-- OpenID Connect CIBA (poll mode): the delivery mode a client registered, and the
-- backchannel requests. A request is an action confirmation of the user; the client
-- knows it by auth_req_id, stored as its SHA-256. Redemption is the confirmation's
-- consumption, so it happens once.
ALTER TABLE oauth2_clients ADD COLUMN backchannel_token_delivery_mode VARCHAR(16) NOT NULL DEFAULT '';

CREATE TABLE oauth2_ciba_requests (
  id VARCHAR(64) PRIMARY KEY,
  confirmation_id VARCHAR(36) NOT NULL REFERENCES confirmations(id) ON DELETE CASCADE,
  client_id VARCHAR(255) NOT NULL REFERENCES oauth2_clients(id) ON DELETE CASCADE,
  identity_id BIGINT NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
  scope TEXT NOT NULL,
  poll_interval INTEGER NOT NULL,
  last_polled_at TIMESTAMP NULL,
  expires_at TIMESTAMP NOT NULL,
  created_at TIMESTAMP NOT NULL
);
CREATE INDEX oauth2_ciba_requests_expires_at_idx ON oauth2_ciba_requests (expires_at);
CREATE INDEX oauth2_ciba_requests_confirmation_idx ON oauth2_ciba_requests (confirmation_id);
